"""The tau sweep (:func:`run_sweep_tau`, the paper's Tables 4/5): ``sweeps: {select.tau: [...]}``.

A neuron's hypotheses, and every hypothesis' AR, do not depend on tau (its threshold is its own p99): only
which neurons are selected, and so the mean AR the filter uses, does. The sweep therefore hypothesises once
for the loosest tau (the run's own results when they already cover it) and, per tau, keeps the neurons whose
ratio exceeds it and reruns Verify's own AR and filter code on the shared generation cache: no probe rerun,
no image generated twice.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import read_json, write_json
from . import EvaluateError


def format_tau(tau: float) -> str:
    """Path form of a tau value: ``4.0`` -> ``4``, ``7.5`` -> ``7.5``."""
    return f"{float(tau):g}"


def select_at_tau(summary: dict[str, Any], tau: float) -> dict[str, Any]:
    """A selection summary recomputed for another tau from the per-neuron ratios (dead neurons never)."""
    out = {**summary, "tau": float(tau), "enabled": True, "neurons": {}}
    n_sel = 0
    for key, info in summary["neurons"].items():
        ratio = float(info["ratio"])  # "inf" strings parse
        sel = (not info.get("dead")) and ratio > tau
        out["neurons"][key] = {**info, "selected": bool(sel)}
        n_sel += sel
    out["n_selected"] = n_sel
    return out


def run_sweep_tau(
    select_summary: str,
    hypotheses_dir: str,
    manifest_paths: Sequence[str],
    model: str,
    tau: float,
    out_dir: str,
    enabled: bool = True,
) -> dict[str, Any]:
    """One tau of a sweep: the selection at tau, the subset of hypotheses, and Verify's AR/filter on them.
    Writes ``select_summary.json``, ``hypotheses/``, ``verify/{ar.csv,summary.json,generated.json}`` and
    ``neuron_concepts.csv`` under ``out_dir`` (the same names as a run's)."""
    from ..verify.activation_rate import run_activation_rate

    sel = select_at_tau(read_json(select_summary), tau)
    base = read_json(select_summary)
    missing_sel = [
        k for k, v in sel["neurons"].items() if v["selected"] and not base["neurons"][k].get("selected")
    ]
    if missing_sel:
        raise EvaluateError(
            f"sweep tau={format_tau(tau)} selects neuron(s) {missing_sel[:10]} that {select_summary} "
            f"(tau={base.get('tau')}) did not hypothesise; the sweep's selection must use the "
            "smallest tau"
        )
    out = Path(out_dir)
    hyp_out = out / "hypotheses"
    if hyp_out.exists():
        shutil.rmtree(hyp_out)
    hyp_out.mkdir(parents=True)
    src = Path(hypotheses_dir)
    for key, info in sel["neurons"].items():
        if not info["selected"]:
            continue
        f = src / f"{key}.json"
        if not f.is_file():
            raise EvaluateError(
                f"sweep tau={format_tau(tau)}: neuron {key} is selected but {f} does not exist; "
                "rerun the sweep's hypothesize"
            )
        shutil.copyfile(f, hyp_out / f.name)
    write_json(out / "select_summary.json", sel)
    summary = run_activation_rate(
        str(hyp_out),
        str(out / "select_summary.json"),
        list(manifest_paths),
        model,
        str(out / "verify" / "ar.csv"),
        str(out / "verify" / "summary.json"),
        str(out / "neuron_concepts.csv"),
        out_generated=str(out / "verify" / "generated.json"),
        enabled=enabled,
        method="sieve",
    )
    return {**summary, "tau": float(tau)}


def sweep_table(summaries: dict[float, dict[str, Any]], n_neurons: int) -> dict[str, dict[str, Any]]:
    """One row per tau (ascending): selected neurons, hypotheses, mean AR initial/kept, verified share."""
    rows = {}
    for tau in sorted(summaries):
        s = summaries[tau]
        n_sel = int(s.get("n_selected", 0))
        rows[f"tau={format_tau(tau)}"] = {
            "tau": float(tau),
            "n_selected": n_sel,
            "selected_share": n_sel / n_neurons if n_neurons else math.nan,
            "n_hypotheses": s.get("n_hypotheses"),
            "mean_ar_initial": s.get("mean_ar_initial"),
            "n_kept": s.get("n_kept"),
            "mean_ar_kept": s.get("mean_ar_kept"),
            "n_verified": s.get("n_verified"),
            "verified_share": s["n_verified"] / n_sel if n_sel else math.nan,
        }
    return rows


def run_sweep_table(summary_paths: Sequence[str], taus: Sequence[float], out_json: str) -> dict[str, Any]:
    if len(summary_paths) != len(taus):
        raise EvaluateError(f"{len(summary_paths)} sweep summaries for {len(taus)} tau values")
    summaries = {}
    n_neurons = 0
    for tau, p in zip(taus, summary_paths, strict=True):
        s = read_json(p)
        summaries[float(tau)] = s
        n_neurons = int(s.get("n_neurons", n_neurons))
    table = sweep_table(summaries, n_neurons)
    write_json(out_json, table)
    return table
