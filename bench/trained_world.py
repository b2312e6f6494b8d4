"""Time the trained-world example end to end and record what it measured (bench/results/trained_world.json).

Runs ``snakemake --configfile examples/trained_world.yaml --replace-workflow-config --cores N`` in a fresh
working directory (or reads one that already ran, ``--workdir``), then records: the wall time of the whole
run, the load average before and after (the machine may be shared), each trained model's held-out accuracy,
learned classes, training wall and CPU seconds (its training.json), the seconds per rule (Snakemake's
benchmarks), and the headline cells of the paper's tables (final-layer top-1 and selection per final layer).

One round: a run takes minutes, and a rerun is all cached; on a shared machine compare ``cpu_seconds``.

    python bench/trained_world.py                          # a fresh run in a temporary folder, 2 cores
    python bench/trained_world.py --workdir /tmp/run --wall 640   # record a run that already happened
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from sieve.evaluate.neuron_ablation import rank_verified  # noqa: E402
from sieve.io import write_json  # noqa: E402

EXAMPLE = REPO / "examples" / "trained_world.yaml"


def run_example(workdir: Path, cores: int) -> tuple[float, float]:
    """Run the example in ``workdir``; returns its wall seconds and the CPU seconds (user + sys) of its
    processes."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE, workdir / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir)]
    cmd += ["--configfile", str(workdir / "config.yaml"), "--replace-workflow-config", "--cores", str(cores)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=workdir)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def rule_seconds(workdir: Path) -> dict[str, float]:
    """Seconds per rule, summed over its jobs (the benchmark files' ``s`` column)."""
    out: dict[str, float] = defaultdict(float)
    for tsv in sorted((workdir / "benchmarks").rglob("*.tsv")):
        with open(tsv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        name = tsv.stem.rstrip("0123456789").rstrip("_") or tsv.stem
        if tsv.parent.name in ("resnet", "vit") and name == "train":
            name = f"train {tsv.parent.name}"
        out[name] += sum(float(r["s"]) for r in rows)
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def headline(workdir: Path) -> dict[str, Any]:
    """Per final layer: neurons selected, and SIEVE's and CLIP-Dissect's top-1 against the class names."""
    out = {}
    for model in ("resnet_final", "vit_final"):
        base = workdir / "results" / model / "heldout"
        sel = json.loads((base / "select/summary.json").read_text())
        fl = json.loads((base / "world/final_layer_metrics.json").read_text())
        out[model] = {
            "n_selected": sel["n_selected"],
            "n_neurons": sel["n_neurons"],
            **{
                key.replace(" / ", "_"): {
                    k: fl[key][k] for k in ("n_neurons", "clip_cos", "mpnet_cos", "top1_accuracy")
                }
                for key in ("sieve / verified / www", "clip_dissect / all_neurons / www")
                if key in fl
            },
        }
    return out


def selection(workdir: Path) -> dict[str, dict[str, Any]]:
    """Per model entry: neurons selected by the run's select.negative (the default: auto), of how many."""
    out = {}
    for path in sorted((workdir / "results").glob("*/heldout/select/summary.json")):
        sel = json.loads(path.read_text())
        out[path.parents[2].name] = {k: sel.get(k) for k in ("n_selected", "n_neurons", "tau", "negative")}
    return out


def neuron_ablation(workdir: Path) -> dict[str, dict[str, Any]]:
    """Fig. 6 per zeroed neuron (``model/neuron``): how it ranks among the entry's SIEVE-verified neurons by
    the example's rule (best AR, then verified hypotheses, then ratio; rank 1 is the pick), its label, and the accuracy drop with the class that dropped most."""
    out = {}
    for path in sorted((workdir / "results").glob("*/heldout/ablation/*.json")):
        model, rec = path.parents[2].name, json.loads(path.read_text())
        with open(workdir / "results" / model / "heldout/world/neuron_concepts.csv", encoding="utf-8") as fh:
            verified = [r for r in csv.DictReader(fh) if r["status"] == "verified"]
        ranked = rank_verified(verified)  # best_verified's rule, which the example's config uses
        rank = next((i for i, r in enumerate(ranked) if int(r["neuron"]) == rec["neuron"]), None)
        mine = None if rank is None else ranked[rank]
        top = rec["classes"][0] if rec["classes"] else {}
        out[f"{model}/{rec['neuron']}"] = {
            "n_verified": len(ranked),
            "rank_by_best_ar": None if rank is None else rank + 1,
            "n_verified_with_higher_ar": None
            if mine is None
            else sum(float(r["best_ar"]) > float(mine["best_ar"]) for r in ranked),
            "best_concept": None if mine is None else mine["best_concept"],
            "best_ar": None if mine is None else float(mine["best_ar"]),
            "accuracy": rec["accuracy"],
            "ablated_accuracy": rec["ablated_accuracy"],
            "n_changed_predictions": rec.get("n_changed_predictions"),
            "largest_drop": {k: top.get(k) for k in ("name", "accuracy", "ablated_accuracy", "drop")},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path, help="a folder where the example already ran (no new run)")
    ap.add_argument("--wall", type=float, help="with --workdir: that run's wall seconds, as measured")
    ap.add_argument("--cpu", type=float, help="with --workdir: that run's CPU seconds (user + sys, `time`)")
    ap.add_argument(
        "--loadavg-start", type=float, nargs=3, help="with --workdir: the load averages when that run started"
    )
    ap.add_argument("--note", default="", help="what else to record (e.g. the machine was shared)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/trained_world.json")
    args = ap.parse_args()
    load_before = os.getloadavg()
    if args.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="trained_world_"))
        wall, cpu = run_example(workdir, args.cores)
    else:
        workdir, wall, cpu = args.workdir, args.wall, args.cpu
    training = {
        p.parent.name: {
            k: json.loads(p.read_text())[k]
            for k in (
                "accuracy",
                "learned",
                "train_seconds",
                "cpu_seconds",
                "steps",
                "threads",
                "min_accuracy",
            )
        }
        for p in sorted((workdir / "results/trained_world").glob("*/training.json"))
    }
    write_json(
        args.out,
        {
            "command": "snakemake --configfile examples/trained_world.yaml --replace-workflow-config "
            f"--cores {args.cores}",
            "wall_seconds": None if wall is None else round(wall, 1),
            "cpu_seconds": None if cpu is None else round(cpu, 1),
            "cores": args.cores,
            "rounds": 1,
            "note": args.note,
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "loadavg_start": list(load_before) if args.workdir is None else args.loadavg_start,
                "loadavg_end": list(os.getloadavg()),
            },
            "training": training,
            "final_layer": headline(workdir),
            "selected": selection(workdir),
            "neuron_ablation": neuron_ablation(workdir),
            "rule_seconds": rule_seconds(workdir),
        },
    )
    print(json.dumps({"wall_seconds": wall, "training": training}, indent=1))


if __name__ == "__main__":
    main()
