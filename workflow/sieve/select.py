"""Select stage: which neurons have a well-defined function.

Per neuron, over its pooled activations on the probe set: ``ratio = p99 / median`` (numpy percentiles with
linear interpolation). A neuron is selected when ``ratio > tau``.

Edge cases (tested):

- Negative activations (ViT class tokens, logits of a final layer). A ratio of raw signed values is
  meaningless (a median near 0 makes any neuron look selective, a negative one none), so ``negative: auto``
  (default) leaves a layer whose activations are all >= 0 (ReLU/avgpool: the paper's setting) untouched,
  and for a layer with any negative value takes ``exp``: the paper's ratio on ``exp(x / sd)`` (the
  neuron's values as unnormalised probabilities, at the neuron's own temperature, its standard deviation
  over the probe set), which is ``exp((p99 - median) / sd)``: shift- and scale-free, so a logit's arbitrary
  zero does not matter. ``ratio > tau`` then means the top 1% stands more than ``ln(tau)`` standard
  deviations above the median (tau 10: 2.30; a Gaussian neuron has 2.33, so on a signed layer tau 10 keeps
  the neurons whose top 1% stands out at least as far as a Gaussian's). Chosen on measured evidence
  (bench/trained_select.py: the README's Select table): on two trained models it keeps most class neurons
  of learned classes on the final layers and is the only treatment with a non-degenerate selection on every
  signed layer at tau 8 to 12, where ``shift`` (each neuron shifted by its minimum) selects almost nothing,
  ``clip`` every ResNet logit at any tau, and ``raw`` nothing on logits whose medians are all negative. (No
  tail statistic of one neuron separates a learned class from an unlearned one there: the top 1% of those
  logits lies 1.7 to 4.9 standard deviations above the median, learned or not: ``top1pct_sd_above_median``
  in bench/results/trained_select.json.) ``shift``, ``clip`` (clip at
  0: only positive activation counts) and ``raw`` (the paper's p99 / median of the values as they are; a
  negative median is never selected, its ratio is reported as 0) stay available. On a layer with no
  negative value ``raw`` and ``clip`` are the paper's definition exactly.
- Dead neuron: p99 <= 0 after the rule above (for a shifted neuron, or under ``exp``: a constant one). Never
  selected; ratio reported as 0.
- median == 0 < p99: maximally selective; ratio is infinite (written as the string ``"inf"`` in strict JSON)
  and the neuron is selected for any tau.
- ``enabled: false`` (the "no Select" stage ablation) keeps every neuron that is not dead.

The Verify threshold of a neuron is its top-1% probe threshold: the 99th percentile of its raw pooled
activation.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .io import write_json

log = logging.getLogger(__name__)


NEGATIVE_TREATMENTS = ("auto", "exp", "clip", "shift", "raw")


def resolve_negative(acts: np.ndarray, negative: str) -> str:
    """The treatment ``auto`` stands for on this layer: the paper's ratio (``clip``, equal to ``raw`` there) on
    a layer with no negative value, ``exp`` on a signed one."""
    if negative not in NEGATIVE_TREATMENTS:
        names = ", ".join(repr(t) for t in NEGATIVE_TREATMENTS[:-1])
        raise ValueError(f"select.negative must be {names} or {NEGATIVE_TREATMENTS[-1]!r}, not {negative!r}")
    if negative == "auto":
        return "exp" if (np.asarray(acts) < 0).any() else "clip"
    return negative


def selectivity(acts: np.ndarray, negative: str = "auto") -> dict[str, np.ndarray]:
    """acts [N, C] -> p99, median, ratio, dead, threshold (each [C])."""
    acts = np.asarray(acts, dtype=np.float64)
    negative = resolve_negative(acts, negative)
    threshold = np.percentile(acts, 99, axis=0)
    if negative == "exp":
        p99, median = np.percentile(acts, [99, 50], axis=0)
        sd = acts.std(axis=0)
        dead = sd == 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ratio = np.where(dead, 0.0, np.exp((p99 - median) / np.where(dead, 1.0, sd)))
        return {"p99": p99, "median": median, "ratio": ratio, "dead": dead, "threshold": threshold}
    if negative == "clip":
        a = np.maximum(acts, 0.0)
    elif negative == "shift":
        a = acts - acts.min(axis=0, keepdims=True)
    else:  # raw
        a = acts
    p99, median = np.percentile(a, [99, 50], axis=0)
    dead = p99 <= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            dead | (median < 0), 0.0, np.where(median > 0, p99 / np.where(median > 0, median, 1.0), np.inf)
        )
    return {"p99": p99, "median": median, "ratio": ratio, "dead": dead, "threshold": threshold}


def select_neurons(stats: dict[str, np.ndarray], tau: float, enabled: bool = True) -> np.ndarray:
    """Boolean mask [C] of selected neurons."""
    if enabled:
        return (stats["ratio"] > tau) & ~stats["dead"]
    return ~stats["dead"]


def tau_for_share(ratio: np.ndarray, dead: np.ndarray, share: float) -> float | None:
    """The tau at which ``share`` of the layer's neurons (dead ones included in the count) are selected, or
    None when no tau can: the k-th largest ratio is 0 (too many dead or never-selectable neurons) or infinite
    (too many neurons with median 0, selected at any tau)."""
    n = len(ratio)
    k = int(round(share * n))
    live = np.sort(np.where(dead, 0.0, ratio))[::-1]
    if k < 1 or k > n or live[k - 1] <= 0 or not np.isfinite(live[k - 1]):
        return None
    return float(live[k - 1] * (1 - 1e-9))  # ratio > tau selects the top k


def degenerate_selection(
    stats: dict[str, np.ndarray], selected: np.ndarray, tau: float
) -> dict[str, Any] | None:
    """None for a useful selection; for a degenerate one (no neuron, or every neuron that is not dead, selected
    at ``tau``) what it is and the taus that would select 10% and 90% of the layer's neurons, with a message
    for the log and the report. A layer with every neuron dead is not flagged here (``n_dead`` says it)."""
    n_live = int((~stats["dead"]).sum())
    n_sel = int(selected.sum())
    if n_live == 0 or 0 < n_sel < n_live:
        return None
    kind = "none" if n_sel == 0 else "all"
    t10 = tau_for_share(stats["ratio"], stats["dead"], 0.1)
    t90 = tau_for_share(stats["ratio"], stats["dead"], 0.9)
    n_inf = int(np.isinf(stats["ratio"][~stats["dead"]]).sum())

    def say(t: float | None, share: str) -> str:
        if t is not None:
            return f"tau {t:.4g} would select {share}"
        if n_inf >= 0.1 * len(selected):
            return f"no tau selects {share} ({n_inf} neurons have median 0: selected at any tau)"
        return f"no tau selects {share} (too few neurons have a ratio above 0)"

    what = "no neuron" if kind == "none" else f"every neuron that is not dead ({n_live})"
    message = (
        f"degenerate selection: {what} of {len(selected)} selected at tau {tau:g}; "
        f"{say(t10, '10%')}, {say(t90, '90%')} (select.negative and select.tau: see docs/configuration.md)"
    )
    return {"kind": kind, "tau_selecting_10pct": t10, "tau_selecting_90pct": t90, "message": message}


def run_select(
    activations: dict[str, Any],
    summary_path: str,
    neurons_dir: str,
    tau: float = 10.0,
    top_n: int = 20,
    enabled: bool = True,
    negative: str = "auto",
) -> dict[str, Any]:
    """Write ``select/summary.json`` and one ``neurons/{neuron}.json`` per selected neuron."""
    acts = activations["activations"]
    stats = selectivity(acts, negative)
    selected = select_neurons(stats, tau, enabled)
    images = activations["images"]
    probe_index = activations["probe_index"]
    t_index, t_value = activations["topk_index"], activations["topk_value"]
    if t_index.shape[1] < min(top_n, acts.shape[0]):
        raise ValueError(
            f"the activations file keeps {t_index.shape[1]} top images per neuron but select.top_n is {top_n}; "
            "rerun the probe (it is keyed on top_n)"
        )
    out = Path(neurons_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    for n in np.flatnonzero(selected):
        k = min(top_n, t_index.shape[1])
        top = [
            {
                "rank": r,
                "index": int(t_index[n, r]),
                "probe_index": int(probe_index[t_index[n, r]]),
                "path": images[t_index[n, r]],
                "activation": float(t_value[n, r]),
            }
            for r in range(k)
        ]
        write_json(
            os.path.join(out, f"{int(n)}.json"),
            {
                "neuron": int(n),
                "ratio": float(stats["ratio"][n]),
                "p99": float(stats["p99"][n]),
                "median": float(stats["median"][n]),
                "threshold": float(stats["threshold"][n]),
                "top": top,
            },
        )
    neurons = {
        str(n): {
            "p99": float(stats["p99"][n]),
            "median": float(stats["median"][n]),
            "ratio": float(stats["ratio"][n]),
            "threshold": float(stats["threshold"][n]),
            "dead": bool(stats["dead"][n]),
            "selected": bool(selected[n]),
        }
        for n in range(acts.shape[1])
    }
    summary = {
        "tau": float(tau),
        "enabled": bool(enabled),
        "negative": negative,
        "top_n": int(top_n),
        "n_images": int(acts.shape[0]),
        "n_neurons": int(acts.shape[1]),
        "n_selected": int(selected.sum()),
        "n_dead": int(stats["dead"].sum()),
        "model": str(activations["attrs"].get("model", "")),
        "layer": str(activations["attrs"].get("layer", "")),
        "probe": str(activations["attrs"].get("probe", "")),
        "n_skipped": int(activations["attrs"].get("n_skipped", 0)),
        "neurons": neurons,
    }
    degenerate = degenerate_selection(stats, selected, tau) if enabled else None
    if degenerate is not None:
        summary["degenerate"] = degenerate  # only then: a useful selection's summary keeps its layout
        log.warning("select: %s", degenerate["message"])
    write_json(summary_path, summary)
    log.info(
        "select: %d of %d neurons selected (tau=%s), %d dead",
        summary["n_selected"],
        summary["n_neurons"],
        tau,
        summary["n_dead"],
    )
    return summary


def ratio_histogram(summary: dict[str, Any], out_png: str) -> None:
    """Histogram of log10 ratios with tau marked; infinite ratios are drawn in the last bin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: its import is most of this job's (issue 14)

    ratios = np.array([float(v["ratio"]) for v in summary["neurons"].values() if not v["dead"]])
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    n_inf = int(np.isinf(ratios).sum())
    fig = Figure(figsize=(6, 3.5), dpi=120)
    FigureCanvasAgg(fig)  # what pyplot's Agg backend gives it
    ax = fig.subplots()
    logs = np.log10(finite) if finite.size else np.array([0.0])
    hi = max(float(logs.max()), np.log10(summary["tau"])) + 0.2
    if n_inf:
        logs = np.concatenate([logs, np.full(n_inf, hi)])
    ax.hist(logs, bins=40, color="#4477aa")
    ax.axvline(np.log10(summary["tau"]), color="#cc3311", linestyle="--", label=f"tau = {summary['tau']:g}")
    ax.set_xlabel("log10(p99 / median)")
    ax.set_ylabel("neurons")
    ax.set_title(
        f"{summary.get('model', '')} {summary.get('layer', '')}: {summary['n_selected']} of "
        f"{summary['n_neurons']} selected" + (f" ({n_inf} with median 0)" if n_inf else ""),
        fontsize=9,
    )
    ax.legend()
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
