"""What each treatment of negative values selects on learned, signed layers (issue 16's evidence).

Trains the trained world's two default models (sieve/trained/default.yaml: torchvision's ResNet with one
BasicBlock per stage, torchvision's VisionTransformer with 4 blocks of width 128 and patch 8), probes their
penultimate (``layer4`` / ``encoder.ln``) and final (``fc`` / ``heads.head``) layers on the planted world's
probe scenes with sieve's own loader and probe pass (``load_model`` + ``run_probe``, the workflow's hooks),
and counts what ``sieve.select.selectivity`` selects with ``exp`` (what ``auto``, the default, takes on a signed
layer), ``clip``, ``shift`` and ``raw`` at tau 4..12.
For a final layer it also counts the selected neurons that are class neurons of a learned class (held-out
recall above ``training.learned_recall``).

    python bench/trained_select.py                 # -> bench/results/trained_select.json (~6 min, 1 thread)
    python bench/trained_select.py --threads 2 --n-images 600 --out /tmp/trained_select.json
    python bench/trained_select.py --keep /tmp/ts   # keeps checkpoints + activations; a rerun only recounts
    python bench/trained_select.py --table          # the README's Select table, from the results file
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from sieve.activations import read_activations  # noqa: E402
from sieve.backends.imagesets import open_image_set  # noqa: E402
from sieve.backends.models import load_model  # noqa: E402
from sieve.io import read_json, write_json  # noqa: E402
from sieve.probe import run_probe  # noqa: E402
from sieve.select import select_neurons, selectivity, tau_for_share  # noqa: E402
from sieve.trained import load_trained_world, model_spec, render_split, train_model  # noqa: E402
from sieve.trained.train import FINAL, PENULTIMATE, build_model, save_checkpoint  # noqa: E402

TAUS = (4, 6, 8, 10, 12)
TREATMENTS = ("exp", "clip", "shift", "raw")
ROLES = {"penultimate": "penultimate", "final": "final (logits)"}


def layer_table(acts: np.ndarray, learned: list[int] | None) -> dict[str, Any]:
    """Per treatment: counts and shares selected at each tau, (final layer) learned class neurons among them,
    and the taus that would select 10% and 90% of the layer."""
    n = acts.shape[1]
    med = np.median(acts, axis=0)
    out: dict[str, Any] = {
        "n_neurons": n,
        "min": float(acts.min()),
        "share_negative_values": float((acts < 0).mean()),
        "n_negative_median": int((med < 0).sum()),
    }
    for t in TREATMENTS:
        stats = selectivity(acts, negative=t)
        rows = {}
        for tau in TAUS:
            sel = select_neurons(stats, tau)
            row: dict[str, Any] = {"selected": int(sel.sum()), "share": round(float(sel.mean()), 4)}
            if learned is not None:
                row["learned_class_neurons_selected"] = int(sel[learned].sum())
            rows[str(tau)] = row
        finite = stats["ratio"][np.isfinite(stats["ratio"]) & ~stats["dead"]]
        out[t] = {
            "by_tau": rows,
            "n_dead": int(stats["dead"].sum()),
            "n_inf": int(np.isinf(stats["ratio"]).sum()),
            "ratio_median": float(np.median(finite)) if finite.size else None,
            "tau_selecting_10pct": tau_for_share(stats["ratio"], stats["dead"], 0.1),
            "tau_selecting_90pct": tau_for_share(stats["ratio"], stats["dead"], 0.9),
        }
    if learned is not None:
        out["n_learned_classes"] = len(learned)
        # how far the top 1% lies above the median, in standard deviations (ln of exp's ratio): learned
        # classes against the others (a tail statistic of one neuron does not separate them)
        z = np.log(selectivity(acts, negative="exp")["ratio"])
        others = [c for c in range(n) if c not in set(learned)]
        out["top1pct_sd_above_median"] = {
            "learned": [round(float(z[learned].min()), 2), round(float(z[learned].max()), 2)],
            "not_learned": [round(float(z[others].min()), 2), round(float(z[others].max()), 2)]
            if others
            else None,
        }
    if out["min"] < 0:
        out["alternatives"] = alternatives(acts, learned)
    return out


def robust_z_ratio(acts: np.ndarray) -> np.ndarray:
    """1 + (p99 - median) / MAD: a robust z of the top 1%, mapped so that it equals the paper's ratio when the
    median is one MAD above the floor (one of the candidates issue 16 names; not a treatment sieve offers)."""
    p99, med = np.percentile(acts, [99, 50], axis=0)
    mad = np.median(np.abs(acts - med), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mad > 0, 1 + (p99 - med) / np.where(mad > 0, mad, 1.0), np.inf)


def alternatives(acts: np.ndarray, learned: list[int] | None) -> dict[str, Any]:
    """Other readings of a signed layer, measured for comparison and rejected (not treatments sieve offers):
    the robust z above; on a final layer also the paper's ratio on softmax probabilities (non-negative), and
    ``raw`` on logits centred per image (softmax does not change when one number is added to every logit of an
    image, so a logit's own zero means nothing)."""
    ratios = {"robust_z_mad": robust_z_ratio(acts)}
    if learned is not None:
        probs = torch.softmax(torch.from_numpy(acts).double(), dim=1).numpy()
        ratios["softmax_probabilities"] = selectivity(probs, negative="clip")["ratio"]
        centred = acts - acts.mean(axis=1, keepdims=True)
        ratios["centred_logits_raw"] = selectivity(centred, negative="raw")["ratio"]
    out = {}
    for label, ratio in ratios.items():
        rows = {}
        for tau in TAUS:
            sel = ratio > tau
            rows[str(tau)] = {"selected": int(sel.sum())}
            if learned is not None:
                rows[str(tau)]["learned_class_neurons_selected"] = int(sel[learned].sum())
        out[label] = rows
    return out


def _cell(row: dict[str, Any], final: bool) -> str:
    """``selected`` (and, on a final layer, ``/ learned class neurons among them``)."""
    return f"{row['selected']} / {row['learned_class_neurons_selected']}" if final else str(row["selected"])


def markdown_table(result: dict[str, Any]) -> str:
    """The README's Select table: per trained model and layer, the neurons each treatment selects at each tau
    (on a final layer: ``selected / learned class neurons among them``) and the taus selecting 10% and 90%.
    A layer with no negative value gets one row: every treatment is the paper's ratio there."""
    head = ["layer", "treatment", *(f"tau {t}" for t in result["taus"]), "tau for 10% / 90%"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, entry in result["models"].items():
        for role, layer in entry["layers"].items():
            final = role == "final"
            where = f"{name} `{layer['layer']}` ({layer['n_neurons']}"
            where += f" logits, {layer['n_learned_classes']} learned)" if final else ")"
            signed = layer["min"] < 0
            for t in TREATMENTS if signed else ("clip",):
                d = layer[t]
                label = ("`exp` = `auto`" if t == "exp" else f"`{t}`") if signed else "`auto` = paper, >= 0"
                taus = (d["tau_selecting_10pct"], d["tau_selecting_90pct"])
                cells = [
                    where,
                    label,
                    *(_cell(d["by_tau"][str(tau)], final) for tau in result["taus"]),
                    " / ".join("none" if v is None else f"{v:.3g}" for v in taus),
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="default", help="trained-world spec (default: the packaged one)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on a machine shared with other jobs, 2 threads spend most of their "
        "time waiting on each other; 1 also gives the same weights whatever the core count)",
    )
    ap.add_argument("--n-images", type=int, default=600, help="planted-world probe scenes (seed 0)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "trained_select.json"))
    ap.add_argument(
        "--keep",
        default=None,
        help="folder to keep the checkpoints, training metrics and activation files in; a later run with the "
        "same folder reuses them (no training, no probe) and only recomputes the tables",
    )
    ap.add_argument("--table", action="store_true", help="print the README's table from --out and stop")
    args = ap.parse_args()
    if args.table:
        print(markdown_table(read_json(args.out)), end="")
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    tw = load_trained_world(args.spec)
    result: dict[str, Any] = {
        "spec": args.spec,
        "threads": args.threads,
        "n_probe_images": args.n_images,
        "taus": list(TAUS),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "loadavg_start": list(os.getloadavg()),
        },
        "models": {},
        "note": "wall-clock times on a machine shared with other jobs (see loadavg); cpu_seconds is the work. "
        "With --keep, training and probe results of an earlier invocation are reused (probe_seconds null).",
    }
    t0 = time.perf_counter()
    _, pre = build_model(tw, next(iter(tw.models)))
    data = {split: render_split(tw, split, pre) for split in ("train", "test")}
    result["render_seconds"] = round(time.perf_counter() - t0, 1)
    probe = open_image_set(
        "synthetic", {"kind": "synthetic", "n_images": args.n_images, "seed": 0, "spec": tw.world_spec}
    )
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or scratch
        os.makedirs(tmp, exist_ok=True)
        for name, settings in tw.models.items():
            load_before = os.getloadavg()[0]
            ckpt = os.path.join(tmp, f"{name}.pt")
            metrics = os.path.join(tmp, f"{name}_train.json")
            if os.path.exists(ckpt) and os.path.exists(metrics):
                trained = read_json(metrics)
                logging.info("%s: reusing %s (trained before; its metrics are %s)", name, ckpt, metrics)
            else:
                net, res = train_model(tw, name, threads=args.threads, data=data)
                save_checkpoint(net, ckpt)
                trained = {**res.as_dict(), "n_parameters": sum(p.numel() for p in net.parameters())}
                write_json(metrics, trained)
            entry: dict[str, Any] = {
                **trained,
                "arch": settings.arch,
                "kwargs": tw.model_kwargs(name),
                "loadavg_1min_before_after": [load_before, os.getloadavg()[0]],
                "layers": {},
            }
            for role, layer in (("penultimate", PENULTIMATE[settings.arch]), ("final", FINAL[settings.arch])):
                loaded = load_model(name, model_spec(tw, name, weights=ckpt, layer=layer))
                h5 = os.path.join(tmp, f"{name}_{role}_{args.n_images}.h5")
                t1 = time.perf_counter()
                reused = os.path.exists(h5)
                if not reused:
                    run_probe(loaded, probe, h5, top_n=20, batch_size=64, progress=False)
                acts = read_activations(h5)["activations"]
                table = layer_table(acts, trained["learned"] if role == "final" else None)
                entry["layers"][role] = {
                    "layer": loaded.layer,
                    # a probe reused from --keep was timed when it ran, in an earlier invocation
                    "probe_seconds": None if reused else round(time.perf_counter() - t1, 1),
                    **table,
                }
                logging.info(
                    "%s %s (%s): %s",
                    name,
                    role,
                    loaded.layer,
                    {t: table[t]["by_tau"]["10"]["selected"] for t in TREATMENTS},
                )
            result["models"][name] = entry
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
