"""Step 3 of Verify: Activation Rate of every hypothesis, the mean-AR filter and the per-neuron table.

AR = share of a concept's images on which the neuron's pooled activation is above its probe threshold (the 99th
percentile from Select); hypotheses below the initial mean AR are rejected. Writes ``ar.csv``, ``summary.json``,
``neuron_concepts.csv`` and ``generated.json``; the column constants are what the report and the truth
comparison read.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..config import schema_default
from ..io import read_json, write_csv, write_json
from ..verify_stats import specificity_keep
from . import VerifyError
from .cache import CacheDamage, load_acts
from .controls import concept_set_pool, pool_activations, score_hypotheses
from .requests import iter_hypotheses, read_hypotheses

log = logging.getLogger(__name__)

AR_COLUMNS = [
    "neuron",
    "cluster",
    "concept",
    "concept_id",
    "rank",
    "score",
    "n_images",
    "n_active",
    "ar",
    "kept",
    "ar_low",
    "ar_high",
    "control_rate",
    "auc",
    "f1",
    "kept_paper",
    "kept_specificity",
]
# The filters of ``verify.filter``: the paper's rule (AR >= the initial mean AR) and that rule plus the control
# rate's cap (sieve.verify_stats.specificity_keep). ``kept`` is the active one's column.
FILTERS = ("paper", "specificity")
NEURON_COLUMNS = [
    "neuron",
    "status",
    "n_hypotheses",
    "n_verified",
    "best_concept",
    "best_ar",
    "concepts",
    "ars",
    "concept_ids",
    "ratio",
    "threshold",
]


def activation_rate(acts: np.ndarray, threshold: float) -> tuple[int, int, float]:
    """Pooled activations of one neuron on a concept's images -> (n_images, n_active, AR).
    Active means strictly above the neuron's probe threshold."""
    acts = np.asarray(acts, dtype=np.float64).ravel()
    n = int(acts.size)
    active = int(np.count_nonzero(acts > threshold))
    return n, active, (active / n if n else math.nan)


def filter_hypotheses(ar: np.ndarray, enabled: bool = True) -> tuple[np.ndarray, float, float]:
    """AR of every hypothesis -> (kept mask, initial mean AR, mean AR of those kept).

    Hypotheses whose AR is below the initial mean (over all hypotheses) are rejected, an AR equal to it is kept
    (compared exactly, not after float rounding); ``enabled=False`` (the
    "no Verify" stage ablation) keeps every hypothesis, and both means are still reported."""
    ar = np.asarray(ar, dtype=np.float64)
    if ar.size == 0:
        return np.zeros(0, dtype=bool), math.nan, math.nan
    if not np.isfinite(ar).all():
        raise VerifyError(f"{int(np.count_nonzero(~np.isfinite(ar)))} hypotheses have no finite AR")
    # Exact arithmetic on the ratios n_active / n_images the ARs are: a float mean of equal ARs can round above
    # them (7 x 0.35 -> 0.35000000000000003) and would reject hypotheses that are not below the mean. Each
    # distinct AR is read back as the nearest fraction with a denominator up to 10^6 (exact for any image count
    # up to that), so ties with the mean are ties.
    values, counts = np.unique(ar, return_counts=True)
    exact = [Fraction(float(v)).limit_denominator(1_000_000) for v in values]
    mean_exact = sum(f * int(c) for f, c in zip(exact, counts, strict=True)) / int(ar.size)
    keep_value = np.array([not enabled or f >= mean_exact for f in exact])
    kept = keep_value[np.searchsorted(values, ar)]
    n_kept = int(counts[keep_value].sum())
    kept_total = sum(f * int(c) for f, c, k in zip(exact, counts, keep_value, strict=True) if k)
    mean_initial = float(mean_exact)
    mean_kept = float(kept_total / n_kept) if n_kept else math.nan
    return kept, mean_initial, mean_kept


def index_manifests(manifest_paths: Sequence[str | os.PathLike[str]]) -> dict[str, dict[str, Any]]:
    """concept text -> its manifest record (with the manifest's seeds)."""
    return index_manifests_by(manifest_paths)[0]


def index_manifests_by(
    manifest_paths: Sequence[str | os.PathLike[str]],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(concept text -> manifest record, prompt -> manifest record): hypotheses are found by their text, the
    control pool's entries by their prompt (a neutral prompt names no concept text)."""
    by_text: dict[str, dict[str, Any]] = {}
    by_prompt: dict[str, dict[str, Any]] = {}
    for mp in manifest_paths:
        m = read_json(mp)
        for c in m["concepts"]:
            rec = {**c, "manifest": str(mp), "models": m["models"]}
            if "prompt" in c:  # every shard manifest has it; the report's readers need only the texts
                by_prompt[c["prompt"]] = rec
            for t in c["texts"]:
                by_text[t] = rec
    return by_text, by_prompt


def read_cached_acts(path: str, concept: str, model: str) -> tuple[np.ndarray, np.ndarray]:
    """The activations of a concept, checked against the checksum recorded when they were written. A missing or
    damaged file stops the job naming it: the cache changed after this run's generation plan, and the next
    ``snakemake`` finds the damage when it starts and generates the file again."""
    try:
        return load_acts(Path(path))
    except CacheDamage as exc:
        log.error("%s", exc)
        raise VerifyError(
            f"activations of concept {concept!r} for model {model!r}: {exc} (the cache changed "
            "during this run); run snakemake again: it finds damaged or missing cache entries when "
            "it starts and generates them again"
        ) from None


class RecordActs:
    """Pooled activations [n_images, C] of one model on a manifest record's images, in the record's seed order;
    each cache file is read and checked once per job."""

    def __init__(self, model: str, n_neurons: int) -> None:
        self.model, self.n_neurons = model, n_neurons
        self._files: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, rec: dict[str, Any], what: str) -> np.ndarray:
        model = self.model
        if model not in rec["acts"]:
            raise VerifyError(
                f"generation manifest {rec['manifest']} has no activations of model {model!r} "
                f"(models: {', '.join(rec['acts'])}); run snakemake again"
            )
        path = rec["acts"][model]
        if path not in self._files:
            self._files[path] = read_cached_acts(path, what, model)
        seeds, pooled = self._files[path]
        want = np.asarray(rec["seeds"], dtype=np.int64)
        pos = {int(s): i for i, s in enumerate(seeds)}
        missing = [int(s) for s in want if int(s) not in pos]
        if missing:
            raise VerifyError(f"activations {path} of {what} lack seeds {missing[:5]}; run snakemake again")
        if pooled.shape[1] != self.n_neurons:
            raise VerifyError(
                f"activations {path} have {pooled.shape[1]} neurons but model {model!r} has {self.n_neurons} "
                "in select/summary.json; run snakemake again"
            )
        return pooled[[pos[int(s)] for s in want]]


def compute_ar(
    hyps: list[dict[str, Any]],
    select_summary: dict[str, Any],
    by_text: dict[str, dict[str, Any]],
    model: str,
    hypotheses_dir: str = "",
    load: RecordActs | None = None,
    concept_acts: list[np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """One row per (neuron, cluster, concept) hypothesis with n_images, n_active, ar. With ``concept_acts`` (a
    list), each row's activations of its neuron on its concept's images are appended to it."""
    neurons = select_summary["neurons"]
    n_neurons = int(select_summary.get("n_neurons", len(neurons)))
    load = load or RecordActs(model, n_neurons)
    rows = []
    for r in iter_hypotheses(hyps):
        n = r["neuron"]
        if str(n) not in neurons:
            raise VerifyError(
                f"{hypotheses_dir}: neuron {n} is not a neuron of the layer ({n_neurons} neurons in "
                "select/summary.json)"
            )
        rec = by_text.get(r["concept"])
        if rec is None:
            raise VerifyError(
                f"{hypotheses_dir}: concept {r['concept']!r} (id {r['concept_id']}) of neuron {n} is in "
                "no generation manifest; run snakemake again (generation_requests and the generation plan rerun)"
            )
        vals = load(rec, f"concept {r['concept']!r}")[:, n]
        n_img, n_act, ar = activation_rate(vals, float(neurons[str(n)]["threshold"]))
        rows.append({**r, "n_images": n_img, "n_active": n_act, "ar": ar})
        if concept_acts is not None:
            concept_acts.append(vals)
    return rows


def neuron_table(select_summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per neuron of the layer: verified (kept concepts, best AR first), unverified, or not selected."""
    by_neuron: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_neuron[r["neuron"]].append(r)
    out = []
    for key in sorted(select_summary["neurons"], key=int):
        info = select_summary["neurons"][key]
        n = int(key)
        hyps = by_neuron.get(n, [])
        best: dict[str, dict[str, Any]] = {}
        for r in hyps:  # a concept named by two clusters counts once, with its AR
            if r["kept"] and (r["concept"] not in best or r["ar"] > best[r["concept"]]["ar"]):
                best[r["concept"]] = r
        kept = sorted(best.values(), key=lambda r: (-r["ar"], r["concept"]))
        if not info.get("selected"):
            status = "dead" if info.get("dead") else "not_selected"
        else:
            status = "verified" if kept else "unverified"
        out.append(
            {
                "neuron": n,
                "status": status,
                "n_hypotheses": len(hyps),
                "n_verified": len(kept),
                "best_concept": kept[0]["concept"] if kept else "",
                "best_ar": kept[0]["ar"] if kept else "",
                "concepts": json.dumps([r["concept"] for r in kept], ensure_ascii=False),
                "ars": json.dumps([round(r["ar"], 6) for r in kept]),
                "concept_ids": json.dumps([r["concept_id"] for r in kept]),
                "ratio": info.get("ratio"),
                "threshold": info.get("threshold"),
            }
        )
    return out


@dataclass(frozen=True)
class Controls:
    """Verify's control pool and filter settings (``verify.*`` keys; defaults from the schema): the concept set's
    ``concepts.json`` the pool is sampled from, and the generator's prompt template (how a sampled concept was
    drawn, and how a hypothesis' own pool entries are recognised)."""

    concepts_json: str
    template: str = schema_default("generator.prompt")
    controls: int = schema_default("verify.controls")
    seed: int = schema_default("verify.control_seed")
    neutral_prompts: tuple[str, ...] = tuple(schema_default("verify.neutral_prompts"))
    filter: str = schema_default("verify.filter")
    max_control_rate: float = schema_default("verify.max_control_rate")

    def __post_init__(self) -> None:
        if self.filter not in FILTERS:
            raise VerifyError(f"verify.filter must be one of {', '.join(FILTERS)}, got {self.filter!r}")
        if not 0.0 <= float(self.max_control_rate) <= 1.0:
            raise VerifyError(f"verify.max_control_rate must be in [0, 1], got {self.max_control_rate!r}")


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def filter_summary(rows: list[dict[str, Any]], column: str, table: list[dict[str, Any]]) -> dict[str, Any]:
    """What one filter keeps: hypotheses, their mean AR and control rate, and the neurons it verifies."""
    kept = [r for r in rows if r[column]]
    return {
        "n_kept": len(kept),
        "mean_ar_kept": _mean([r["ar"] for r in kept]),
        "mean_control_rate_kept": _mean([r["control_rate"] for r in kept if r["control_rate"] != ""]),
        "n_verified": sum(1 for t in table if t["status"] == "verified"),
    }


def run_activation_rate(
    hypotheses_dir: str,
    select_summary_path: str,
    manifest_paths: Sequence[str],
    model: str,
    out_ar: str,
    out_summary: str,
    out_neuron_concepts: str,
    out_generated: str | None = None,
    enabled: bool = True,
    method: str = "sieve",
    controls: Controls | None = None,
) -> dict[str, Any]:
    """AR of every hypothesis of one folder, the filters, and the per-neuron table (callable for baselines).

    With ``controls`` (the workflow always passes them), every hypothesis is also scored against its concept
    set's control pool (:mod:`sieve.verify.controls`) and both filters are applied; ``kept`` is the one
    ``controls.filter`` names. Without, the control columns are empty and only the paper's rule applies.
    ``enabled=False`` (the "no Verify" ablation) keeps every hypothesis under both filters."""
    summary_sel = read_json(select_summary_path)
    hyps = read_hypotheses(hypotheses_dir)
    by_text, by_prompt = index_manifests_by(manifest_paths)
    n_neurons = int(summary_sel.get("n_neurons", len(summary_sel["neurons"])))
    load = RecordActs(model, n_neurons)
    concept_acts: list[np.ndarray] = []
    rows = compute_ar(hyps, summary_sel, by_text, model, hypotheses_dir, load, concept_acts)
    kept, mean_initial, mean_kept = filter_hypotheses(np.array([r["ar"] for r in rows]), enabled)
    active = controls.filter if controls else "paper"
    pool = []
    if controls is not None:
        pool = concept_set_pool(
            controls.concepts_json, controls.controls, controls.seed, controls.neutral_prompts
        )
        pool_acts = pool_activations(pool, controls.template, by_prompt, load)
        thresholds = [float(summary_sel["neurons"][str(r["neuron"])]["threshold"]) for r in rows]
        scores = score_hypotheses(rows, concept_acts, thresholds, pool, pool_acts, controls.template)
        rates = np.array([sc["control_rate"] for sc in scores], dtype=np.float64)
        kept_spec = specificity_keep(kept, rates, controls.max_control_rate) if enabled else kept
    else:
        scores = [dict.fromkeys(("ar_low", "ar_high", "control_rate", "auc", "f1"), "") for _ in rows]
        kept_spec = np.zeros(len(rows), dtype=bool)
    for r, sc, k, ks in zip(rows, scores, kept, kept_spec, strict=True):
        r.update(sc)
        r["kept_paper"] = int(k)
        r["kept_specificity"] = int(ks) if controls is not None else ""
        r["kept"] = int(ks if active == "specificity" else k)
    table = neuron_table(summary_sel, rows)
    n_selected = sum(1 for v in summary_sel["neurons"].values() if v.get("selected"))
    n_verified = sum(1 for t in table if t["status"] == "verified")
    seeds = next(iter(by_text.values()))["seeds"] if by_text else []
    n_kept = sum(1 for r in rows if r["kept"])
    summary = {
        "method": method,
        "model": model,
        "verify_enabled": bool(enabled),
        "n_hypotheses": len(rows),
        "mean_ar_initial": mean_initial,
        "n_kept": n_kept,
        "mean_ar_kept": mean_kept if active == "paper" else _mean([r["ar"] for r in rows if r["kept"]]),
        "n_selected": n_selected,
        "n_verified": n_verified,
        "n_unverified": n_selected - n_verified,
        "n_neurons": len(table),
        "images_per_concept": len(seeds),
        "n_concepts": len({r["concept"] for r in rows}),
    }
    if controls is not None:
        summary["filter"] = active
        summary["max_control_rate"] = float(controls.max_control_rate)
        summary["control_pool"] = {
            "controls": int(controls.controls),
            "seed": int(controls.seed),
            "n_concepts": sum(1 for e in pool if not e.neutral),
            "n_neutral": sum(1 for e in pool if e.neutral),
            "n_images": int(sum(len(a) for a in pool_acts)),
        }
        summary["mean_control_rate"] = _mean([r["control_rate"] for r in rows])
        summary["mean_auc"] = _mean([r["auc"] for r in rows])
        summary["mean_f1"] = _mean([r["f1"] for r in rows])
        summary["filters"] = {}
        for name in FILTERS:
            column = f"kept_{name}"
            summary["filters"][name] = filter_summary(
                rows, column, neuron_table(summary_sel, [{**r, "kept": r[column]} for r in rows])
            )
        summary["filters"]["paper"]["mean_ar_kept"] = mean_kept  # the exact mean, as mean_ar_kept
    write_csv(out_ar, AR_COLUMNS, rows)
    write_csv(out_neuron_concepts, NEURON_COLUMNS, table)
    if out_generated:
        gen = {}
        for r in rows:
            rec = by_text[r["concept"]]
            gen[r["concept_id"]] = {
                "text": r["concept"],
                "prompt": rec["prompt"],
                "entry": rec["entry"],
                "seeds": rec["seeds"],
                "thumbs": rec["thumbs"],
                "images": rec["images"],
            }
        write_json(out_generated, gen)
    write_json(out_summary, summary)
    log.info(
        "verify %s (%s): %d hypotheses, mean AR %.3f initial, %d kept by the %s filter (mean AR %.3f); %d of %d "
        "selected neurons verified",
        model,
        method,
        len(rows),
        mean_initial,
        summary["n_kept"],
        active,
        summary["mean_ar_kept"],
        n_verified,
        n_selected,
    )
    if controls is not None:
        log.info(
            "controls: %d prompts, mean control rate %.3f; the paper's rule keeps %d, the specificity filter %d",
            len(pool),
            summary["mean_control_rate"],
            summary["filters"]["paper"]["n_kept"],
            summary["filters"]["specificity"]["n_kept"],
        )
    return summary
