"""Verify's control pool in the workflow: which prompts it holds, and every hypothesis' scores against it.

The pool of a concept set (:func:`sieve.verify_stats.control_pool`) is a seeded sample of the set's concepts plus
the neutral prompts. It depends on the set's ``concepts.json`` and three config keys only (``verify.controls``,
``verify.control_seed``, ``verify.neutral_prompts``), never on which hypotheses exist: the generation requests
add its prompts to the hypotheses' (:func:`pool_prompts`), the shards generate and measure them once, in the
same content-addressed cache, and the Activation Rate step scores every hypothesis of the set against the same
images (:func:`score_hypotheses`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import verify_stats as vs
from ..io import read_json
from . import VerifyError
from .requests import prompt_for


def read_concept_set(path: str | os.PathLike[str]) -> dict[str, str]:
    """``concepts.json`` of a concept set (written by prepare_concepts) -> concept id -> text."""
    data = read_json(path)
    concepts = data.get("concepts") if isinstance(data, dict) else None
    if not isinstance(concepts, list):
        raise VerifyError(f"concept set file {path} has no 'concepts' list")
    out: dict[str, str] = {}
    for c in concepts:
        if not isinstance(c, dict) or not isinstance(c.get("id"), str) or not isinstance(c.get("text"), str):
            raise VerifyError(f"concept set file {path}: an entry lacks a string 'id' or 'text': {c!r}")
        out[c["id"]] = c["text"]
    return out


def concept_set_pool(
    concepts_json: str | os.PathLike[str], controls: int, seed: int, neutral: Sequence[str]
) -> list[vs.ControlPrompt]:
    """The control pool of one concept set, read from its ``concepts.json``."""
    return vs.control_pool(read_concept_set(concepts_json), int(controls), int(seed), list(neutral))


def entry_prompt(entry: vs.ControlPrompt, template: str) -> str:
    """What the generator is asked for: a sampled concept through the template, a neutral prompt as it is."""
    return entry.text if entry.neutral else prompt_for(template, entry.text)


def pool_prompts(
    concepts_jsons: Sequence[str | os.PathLike[str]],
    template: str,
    controls: int,
    seed: int,
    neutral: Sequence[str],
) -> list[dict[str, Any]]:
    """Every control prompt of every concept set, once: ``{"prompt", "text", "id"}`` (text and id None for a
    neutral prompt), in a stable order (for the generation requests)."""
    seen: dict[str, dict[str, Any]] = {}
    for path in concepts_jsons:
        for e in concept_set_pool(path, controls, seed, neutral):
            seen.setdefault(
                entry_prompt(e, template), {"text": e.text if not e.neutral else None, "id": e.concept_id}
            )
    return [{"prompt": p, **v} for p, v in sorted(seen.items())]


def pool_activations(
    pool: Sequence[vs.ControlPrompt],
    template: str,
    by_prompt: dict[str, dict[str, Any]],
    load: Callable[[dict[str, Any], str], np.ndarray],
) -> list[np.ndarray]:
    """Each pool entry's pooled activations [n_images, C], found in the generation manifests by its prompt
    (``by_prompt``) and read by ``load(record, what)``. A prompt in no manifest stops the job, naming it."""
    out = []
    for e in pool:
        prompt = entry_prompt(e, template)
        rec = by_prompt.get(prompt)
        if rec is None:
            raise VerifyError(
                f"control prompt {prompt!r} is in no generation manifest; run snakemake again "
                "(generation_requests and the generation plan rerun)"
            )
        out.append(load(rec, f"control prompt {prompt!r}"))
    return out


def score_hypotheses(
    rows: Sequence[dict[str, Any]],
    concept_acts: Sequence[np.ndarray],
    thresholds: Sequence[float],
    pool: Sequence[vs.ControlPrompt],
    pool_acts: Sequence[np.ndarray],
    template: str,
) -> list[dict[str, float]]:
    """Per hypothesis (``rows[i]``: neuron, concept, concept_id; ``concept_acts[i]``: the neuron's pooled
    activations on the concept's images; ``thresholds[i]``: its probe threshold): the Wilson 95% interval of
    AR, the control rate, ROC AUC and F1 against the pool without the concept's own entries
    (:func:`sieve.verify_stats.is_own_control`). The exclusion depends on the hypothesis alone, so a score
    never depends on which other hypotheses exist."""
    if len(pool) != len(pool_acts):
        raise VerifyError(f"the control pool has {len(pool)} entries but {len(pool_acts)} activation arrays")
    stacked = np.concatenate(pool_acts, axis=0) if pool_acts else np.zeros((0, 0))
    entry_of_row = (
        np.repeat(np.arange(len(pool)), [len(a) for a in pool_acts]) if pool_acts else np.zeros(0, int)
    )
    masks: dict[tuple[str, str], np.ndarray] = {}
    out = []
    for r, x, thr in zip(rows, concept_acts, thresholds, strict=True):
        key = (str(r["concept_id"]), str(r["concept"]))
        if key not in masks:
            own = np.array(
                [vs.is_own_control(e, key[0], prompt_for(template, key[1]), key[1], template) for e in pool],
                dtype=bool,
            )
            masks[key] = ~own[entry_of_row] if own.size else np.zeros(0, bool)
        y = stacked[masks[key], int(r["neuron"])]
        if y.size == 0:
            raise VerifyError(
                f"neuron {r['neuron']}, concept {r['concept']!r}: no control images are left once the "
                "concept's own are excluded; raise verify.controls or add verify.neutral_prompts"
            )
        x = np.asarray(x, dtype=np.float64).ravel()
        k = int(np.count_nonzero(x > thr))
        low, high = vs.wilson_interval(k, x.size)
        out.append(
            {
                "ar_low": low,
                "ar_high": high,
                "control_rate": vs.control_rate(y, thr),
                "auc": vs.roc_auc(x, y),
                "f1": vs.f1_at_threshold(x, y, thr),
            }
        )
    return out
