"""Evidence for Verify's specificity filter (issue 13), measured offline on the planted world.

The workflow generates and scores the control pool itself (``verify/ar.csv``'s control columns); this script is
the independent check and the sweep behind the defaults. It builds the pool as the workflow does
(:func:`sieve.verify_stats.control_pool` over the world's concept set, the run's seeds) and measures it with the
same synthetic generator and model, reading prompts the run already generated from its cache (and re-measuring
them once, to check that the offline path gives the cached numbers); ``tests/test_verify_stats_run.py`` checks
that its scores are the workflow's, hypothesis by hypothesis. Then, for every hypothesis of a
finished run (SIEVE's and each baseline's ``ar.csv``): AR, its Wilson interval, the control rate, ROC AUC and
AUPRC, and which hypotheses the paper's rule and the specificity rule keep, by neuron kind and right/wrong.

    snakemake --cores 2 --configfile my_noselect.yaml            # select: {enabled: false}
    python bench/bench_specificity.py results --out bench/results/verify_specificity.json
    python bench/bench_specificity.py results --promiscuous      # adds the promiscuous-neuron world (~2 min)
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sieve import verify_stats as vs
from sieve.concepts import concept_id
from sieve.evaluate.truth import is_right
from sieve.io import read_csv, read_json
from sieve.synthetic.world import World, load_world, render_prompt, resolve_spec_path

MAX_CONTROL_RATES = (0.2, 0.25, 0.35, 0.5, 0.65)
MIN_AUCS = (0.6, 0.75, 0.9)  # the alternative condition, AUC >= m, for comparison


class Measurer:
    """The synthetic model's pooled activations on rendered prompts (the shard's path: 8-bit images, the model)."""

    def __init__(self, world: World, spec: str) -> None:
        from sieve.backends.models import load_model

        self.world = world
        self.model = load_model("synthetic", {"source": "synthetic", "spec": spec, "layer": "penultimate"})

    def prompt(self, prompt: str, seeds: list[int]) -> np.ndarray:
        import torch

        x = np.stack([render_prompt(self.world, prompt, s)[0] for s in seeds])
        return self.images(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)

    def images(self, x: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.activations(self.model.preprocess.normalize(x))[0].numpy().astype(np.float64)


def _cached(manifests: list[dict[str, Any]], root: Path) -> dict[str, tuple[list[int], np.ndarray]]:
    """prompt -> (seeds, pooled [n, C]) from a run's generation manifests (paths are relative to the run)."""
    out = {}
    for m in manifests:
        for c in m["concepts"]:
            with np.load(root / c["acts"]["synthetic"]) as z:
                pos = {int(s): i for i, s in enumerate(z["seeds"])}
                out[c["prompt"]] = (
                    c["seeds"],
                    z["pooled"][[pos[int(s)] for s in c["seeds"]]].astype(np.float64),
                )
    return out


def score_rows(
    rows: list[dict[str, str]],
    thresholds: dict[int, float],
    acts: dict[str, np.ndarray],
    pool: list[vs.ControlPrompt],
    pool_acts: list[np.ndarray],
    world: World,
) -> list[dict[str, Any]]:
    """Every score of every hypothesis (``rows``: an ``ar.csv``), with its neuron's kind and right/wrong."""
    kinds = {n.index: n for n in world.neurons}
    out = []
    for r in rows:
        n = int(r["neuron"])
        x = acts[r["concept"]][:, n]
        y = vs.controls_excluding(
            pool, pool_acts, concept_id=r["concept_id"], prompt=r["concept"], text=r["concept"]
        )[:, n]
        thr = thresholds[n]
        k = int(np.count_nonzero(x > thr))
        low, high = vs.wilson_interval(k, x.size)
        out.append(
            {
                "neuron": n,
                "kind": kinds[n].kind,
                "concept": r["concept"],
                "concept_id": r["concept_id"],
                "right": is_right(world, r["concept"], kinds[n].concepts),
                "ar": k / x.size,
                "ar_csv": float(r["ar"]),
                "ar_low": low,
                "ar_high": high,
                "control_rate": vs.control_rate(y, thr),
                "auc": vs.roc_auc(x, y),
                "auprc": vs.average_precision(x, y),
                "prevalence": x.size / (x.size + y.size),
                "f1": vs.f1_at_threshold(x, y, thr),
                "kept_paper": bool(int(r["kept"])),
            }
        )
    return out


def aggregate(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """By kind and right/wrong: counts kept under the paper's rule, under the specificity rule for each cap on
    the control rate, and (for comparison) under the paper's rule AND AUC >= m."""
    paper = np.array([s["kept_paper"] for s in scored], dtype=bool)
    rate = np.array([s["control_rate"] for s in scored])
    auc = np.array([s["auc"] for s in scored])
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(scored):
        groups.setdefault(f"{s['kind']}/{'right' if s['right'] else 'wrong'}", []).append(i)
    kept = {f"control_rate<={m}": vs.specificity_keep(paper, rate, m) for m in MAX_CONTROL_RATES}
    kept.update({f"auc>={m}": paper & (auc >= m) for m in MIN_AUCS})

    def stats(idx: list[int]) -> dict[str, Any]:
        sel = [scored[i] for i in idx]
        return {
            "n": len(idx),
            "kept_paper": int(paper[idx].sum()),
            "kept_specificity": {m: int(k[idx].sum()) for m, k in kept.items()},
            "auc_min": min(s["auc"] for s in sel),
            "auc_max": max(s["auc"] for s in sel),
            "control_rate_min": min(s["control_rate"] for s in sel),
            "control_rate_max": max(s["control_rate"] for s in sel),
            "auprc_min": min(s["auprc"] for s in sel),
            "auprc_max": max(s["auprc"] for s in sel),
            "f1_min": min(s["f1"] for s in sel),
            "f1_max": max(s["f1"] for s in sel),
        }

    right_kept = [s["auc"] for s in scored if s["right"] and s["kept_paper"]]
    wrong_kept = [s["auc"] for s in scored if not s["right"] and s["kept_paper"]]
    return {
        "n_hypotheses": len(scored),
        "groups": {g: stats(idx) for g, idx in sorted(groups.items())},
        "wrong_kept_paper": len(wrong_kept),
        "wrong_kept_specificity": {
            m: int((k & ~np.array([s["right"] for s in scored])).sum()) for m, k in kept.items()
        },
        "right_kept_paper": len(right_kept),
        "right_kept_specificity": {
            m: int((k & np.array([s["right"] for s in scored])).sum()) for m, k in kept.items()
        },
        "auc_min_right_kept_paper": min(right_kept) if right_kept else math.nan,
        "auc_max_wrong_kept_paper": max(wrong_kept) if wrong_kept else math.nan,
        "control_rate_max_right_kept_paper": max(
            (s["control_rate"] for s in scored if s["right"] and s["kept_paper"]), default=math.nan
        ),
        "control_rate_min_wrong_kept_paper": min(
            (s["control_rate"] for s in scored if not s["right"] and s["kept_paper"]), default=math.nan
        ),
    }


def measure_run(
    results: str | os.PathLike[str], spec: str = "default", controls: int = vs.DEFAULT_CONTROLS, seed: int = 0
) -> dict[str, Any]:
    """Scores of every hypothesis of a finished default-layout run (model, probe and concept set ``synthetic``)."""
    results = Path(results)
    root = results.parent
    world = load_world(spec)
    meas = Measurer(world, spec)
    select = read_json(results / "synthetic" / "synthetic" / "select" / "summary.json")
    thresholds = {int(k): float(v["threshold"]) for k, v in select["neurons"].items()}
    manifests = [read_json(p) for p in sorted(glob.glob(str(results / "generate" / "shards" / "*.json")))]
    cached = _cached(manifests, root)
    seeds = next(iter(cached.values()))[0]
    pool = vs.control_pool({concept_id(t): t for t in world.concept_list()}, controls, seed)
    pool_acts, diffs = [], []
    for entry in pool:
        fresh = meas.prompt(entry.text, seeds)
        if entry.text in cached:
            diffs.append(float(np.abs(cached[entry.text][1] - fresh).max()))
            fresh = cached[entry.text][1]
        pool_acts.append(fresh)
    acts = {p: a for p, (_, a) in cached.items()}
    base = results / "synthetic" / "synthetic" / "synthetic"
    methods = {"sieve": base / "verify" / "ar.csv"}
    methods.update(
        {
            Path(p).parents[1].name: Path(p)
            for p in glob.glob(str(base / "baselines" / "*" / "verify" / "ar.csv"))
        }
    )
    out: dict[str, Any] = {
        "results": str(results),
        "select_enabled": bool(select.get("enabled", True)),
        "controls": controls,
        "seed": seed,
        "images_per_concept": len(seeds),
        "default_max_control_rate": vs.DEFAULT_MAX_CONTROL_RATE,
        "pool": [{"concept_id": e.concept_id, "text": e.text} for e in pool],
        "pool_prompts_in_cache": len(diffs),
        "offline_vs_cache_max_abs_diff": max(diffs) if diffs else None,
        "methods": {},
    }
    for method, path in methods.items():
        scored = score_rows(read_csv(path), thresholds, acts, pool, pool_acts, world)
        out["methods"][method] = {"summary": aggregate(scored), "hypotheses": scored}
    return out


def measure_promiscuous(
    n_probe: int = 600, controls: int = vs.DEFAULT_CONTROLS, seed: int = 0, images: int = 10
) -> dict[str, Any]:
    """The default world plus one promiscuous neuron: its scores, and each detector's, on every object concept
    named as a hypothesis (no Hypothesize needed: AR alone would verify any of them)."""
    import torch
    import yaml

    from sieve.backends.imagesets import open_image_set
    from sieve.select import select_neurons, selectivity

    raw = yaml.safe_load(Path(resolve_spec_path(load_world().source)).read_text(encoding="utf-8"))
    raw["neurons"].append({"kind": "promiscuous"})
    with tempfile.TemporaryDirectory() as tmp:
        spec = str(Path(tmp) / "world.yaml")
        Path(spec).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        world = load_world(spec)
        meas = Measurer(world, spec)
        probe = open_image_set(
            "synthetic", {"kind": "synthetic", "n_images": n_probe, "seed": 0, "spec": spec}
        )
        x = torch.from_numpy(np.stack([np.asarray(probe.load(i)) for i in range(len(probe))])).permute(
            0, 3, 1, 2
        )
        probe_acts = np.concatenate([meas.images(x[i : i + 100] / 255) for i in range(0, len(x), 100)])
        stats = selectivity(probe_acts)
        selected = select_neurons(stats, 10.0)
        seeds = list(range(images))
        pool = vs.control_pool({concept_id(t): t for t in world.concept_list()}, controls, seed)
        pool_acts = [meas.prompt(e.text, seeds) for e in pool]
        p = len(world.neurons) - 1
        rows = []
        for c in world.object_concepts + list(world.colours) + list(world.shapes):
            rows.append(
                {"neuron": str(p), "concept": c, "concept_id": concept_id(c), "ar": "nan", "kept": "1"}
            )
        for n in world.neurons:
            if n.kind == "detector":
                rows.append(
                    {
                        "neuron": str(n.index),
                        "concept": n.concepts[0],
                        "concept_id": concept_id(n.concepts[0]),
                        "ar": "nan",
                        "kept": "1",
                    }
                )
        acts = {r["concept"]: meas.prompt(r["concept"], seeds) for r in rows}
        thresholds = {i: float(t) for i, t in enumerate(stats["threshold"])}
        scored = score_rows(rows, thresholds, acts, pool, pool_acts, world)
    return {
        "promiscuous_ratio": float(stats["ratio"][p]),
        "promiscuous_selected": bool(selected[p]),
        "promiscuous_probe_share_active": float(np.mean(probe_acts[:, p] > 0)),
        "hypotheses": scored,
        "summary": aggregate(scored),
    }


def strict_json(value: Any) -> Any:
    """Strict JSON: NaN (a figure with nothing to measure: no wrong hypothesis kept) becomes null, an infinite
    Select ratio the string "inf" (as select/summary.json writes it)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strict_json(v) for v in value]
    return value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="the results/ folder of a finished run of the default planted world")
    ap.add_argument("--out", default="bench/results/verify_specificity.json")
    ap.add_argument("--controls", type=int, default=vs.DEFAULT_CONTROLS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--promiscuous", action="store_true", help="add the promiscuous-neuron world's figures")
    args = ap.parse_args()
    out = measure_run(args.results, controls=args.controls, seed=args.seed)
    if args.promiscuous:
        out["promiscuous_world"] = measure_promiscuous(controls=args.controls, seed=args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps(strict_json(out), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    for method, m in out["methods"].items():
        print(method, json.dumps(m["summary"], indent=1))
    if args.promiscuous:
        print("promiscuous world", json.dumps(out["promiscuous_world"]["summary"], indent=1))


if __name__ == "__main__":
    main()
