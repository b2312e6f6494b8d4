"""Step 1 of Verify: every distinct prompt that any hypotheses folder names, with its shard (``requests.json``).

A concept's prompt is the ``generator.prompt`` template filled with its text; its shard is
``stable_hash(prompt) mod shards``, so it does not depend on which other concepts exist.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import schema_default
from ..io import read_json, stable_hash, write_json
from . import VerifyError

log = logging.getLogger(__name__)

# The layout of ``hypotheses/{neuron}.json`` (written by Hypothesize and the baselines, read here and by the
# report): {"neuron", "clusters": [{CLUSTER_KEY, "concepts": [{CONCEPT_ID_KEY, CONCEPT_TEXT_KEY, ...}]}]}.
CLUSTER_KEY = "cluster"
CONCEPT_ID_KEY = "id"
CONCEPT_TEXT_KEY = "text"


def prompt_for(template: str, text: str) -> str:
    """Fill every ``{}`` of the prompt template with the concept text (the text is never format-parsed)."""
    return template.replace("{}", text)


def prompt_key(prompt: str) -> str:
    return stable_hash("prompt", prompt, n=24)


def shard_of(prompt: str, n_shards: int) -> int:
    """The shard of a prompt: a stable hash mod ``n_shards`` (independent of every other concept)."""
    return int(stable_hash("shard", prompt, n=16), 16) % int(n_shards)


def concept_seeds(base_seed: int, images_per_concept: int) -> list[int]:
    """One fixed seed per image index."""
    return [int(base_seed) + i for i in range(int(images_per_concept))]


def read_hypotheses(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All ``{neuron}.json`` of a hypotheses folder, by neuron, checked for the fields Verify needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VerifyError(f"hypotheses folder does not exist: {folder}")
    files = [p for p in folder.glob("*.json") if not p.name.startswith(".")]
    out = []
    for p in files:
        try:
            h = read_json(p)
        except ValueError as exc:
            raise VerifyError(f"hypotheses file {p} is not valid JSON: {exc}") from exc
        if "neuron" not in h or not isinstance(h.get("clusters"), list):
            raise VerifyError(f"hypotheses file {p} lacks 'neuron' or a 'clusters' list")
        for c in h["clusters"]:
            for con in c.get("concepts", []):
                if not isinstance(con.get(CONCEPT_TEXT_KEY), str) or not con[CONCEPT_TEXT_KEY].strip():
                    raise VerifyError(
                        f"hypotheses file {p}, neuron {h['neuron']}, cluster {c.get(CLUSTER_KEY)}: "
                        f"a concept has no text: {con!r}"
                    )
        out.append(h)
    return sorted(out, key=lambda h: int(h["neuron"]))


def iter_hypotheses(hyps: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Flatten to one row per (neuron, cluster, concept)."""
    for h in hyps:
        for c in h["clusters"]:
            for con in c.get("concepts", []):
                text = con[CONCEPT_TEXT_KEY]
                yield {
                    "neuron": int(h["neuron"]),
                    "cluster": c.get(CLUSTER_KEY, 0),
                    "concept": text,
                    "concept_id": str(con.get(CONCEPT_ID_KEY, stable_hash(text))),
                    "rank": con.get("rank", ""),
                    "score": con.get("score", ""),
                }


def collect_requests(
    hypotheses_dirs: Sequence[str | os.PathLike[str]],
    template: str = schema_default("generator.prompt"),
    n_shards: int = schema_default("generator.shards"),
    controls: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Every distinct prompt named by any hypothesis of any folder, with its shard; then the control pools'
    prompts (``controls``, from :func:`sieve.verify.controls.pool_prompts`), marked ``"control": true``. A
    control prompt that a hypothesis also names is one request: generated and measured once."""
    concepts: dict[str, dict[str, Any]] = {}
    n_hyp = 0

    def entry(prompt: str) -> dict[str, Any]:
        key = prompt_key(prompt)
        return concepts.setdefault(
            key,
            {
                "key": key,
                "prompt": prompt,
                "shard": shard_of(prompt, n_shards),
                "texts": [],
                "ids": [],
                "n_hypotheses": 0,
            },
        )

    for d in hypotheses_dirs:
        for row in iter_hypotheses(read_hypotheses(d)):
            n_hyp += 1
            c = entry(prompt_for(template, row["concept"]))
            if row["concept"] not in c["texts"]:
                c["texts"].append(row["concept"])
            if row["concept_id"] not in c["ids"]:
                c["ids"].append(row["concept_id"])
            c["n_hypotheses"] += 1
    for ctl in controls:
        c = entry(ctl["prompt"])
        c["control"] = True
        if ctl.get("text") is not None and ctl["text"] not in c["texts"]:
            c["texts"].append(ctl["text"])
        if ctl.get("id") is not None and ctl["id"] not in c["ids"]:
            c["ids"].append(ctl["id"])
    items = sorted(concepts.values(), key=lambda c: c["key"])
    per_shard = [0] * int(n_shards)
    for c in items:
        per_shard[c["shard"]] += 1
    return {
        "prompt_template": template,
        "shards": int(n_shards),
        "n_concepts": len(items),
        "n_hypotheses": n_hyp,
        "n_controls": sum(1 for c in items if c.get("control")),
        "per_shard": per_shard,
        "sources": [str(d) for d in hypotheses_dirs],
        "concepts": items,
    }


def run_requests(
    hypotheses_dirs: Sequence[str],
    out_path: str,
    template: str,
    n_shards: int,
    generator_spec: dict[str, Any] | None = None,
    concepts_jsons: Sequence[str] = (),
    controls: int = schema_default("verify.controls"),
    control_seed: int = schema_default("verify.control_seed"),
    neutral_prompts: Sequence[str] = tuple(schema_default("verify.neutral_prompts")),
) -> dict[str, Any]:
    """The request list of the hypotheses folders, plus the control pool of every concept set whose
    ``concepts.json`` is in ``concepts_jsons`` (none: no controls)."""
    if generator_spec is not None:
        from ..backends.generators import check_generator_source

        check_generator_source(generator_spec)
    from .controls import pool_prompts

    pool = pool_prompts(concepts_jsons, template, controls, control_seed, neutral_prompts)
    req = collect_requests(hypotheses_dirs, template, n_shards, pool)
    write_json(out_path, req)
    log.info(
        "generation requests: %d distinct prompts from %d hypotheses in %d folders and %d control pools "
        "(%d control prompts); per shard %s",
        req["n_concepts"],
        req["n_hypotheses"],
        len(hypotheses_dirs),
        len(concepts_jsons),
        req["n_controls"],
        req["per_shard"],
    )
    return req
