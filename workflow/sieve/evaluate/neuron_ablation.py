"""Neuron ablation (:func:`run_neuron_ablation`, the paper's Fig. 6): what a model loses without one neuron.

Each neuron ``evaluate.ablate_neurons`` names for a model entry (or, with ``{best_verified: N}``, the N neurons of
the run's ``neuron_concepts.csv`` that :func:`best_verified_neurons` ranks first) is zeroed in the analysed layer (a forward hook sets its channel
to 0: dim 1 of a conv map or of ``[B, C]``, the last dim of transformer tokens) and the model's top-1
accuracy per class is measured on the labelled probe set (labels are class indices of the model's output)
with and without it. ``ablation/{neuron}.json`` lists the classes by accuracy drop, largest first;
``ablation/{neuron}.png`` plots the top ones.

Not to be confused with the stage ablations (:mod:`.stage_ablations`), which switch off a stage of SIEVE.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_path, read_csv, write_json
from . import EvaluateError

log = logging.getLogger(__name__)


def rank_verified(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """``neuron_concepts.csv`` rows by highest AR, then more verified hypotheses, then the higher selectivity
    ratio, then the lower neuron id."""
    return sorted(
        rows,
        key=lambda r: (-float(r["best_ar"]), -int(r["n_verified"]), -float(r["ratio"]), int(r["neuron"])),
    )


def best_verified_neurons(neuron_concepts_csv: str, n: int, model: str = "") -> list[int]:
    """The ``n`` neurons SIEVE verified with the highest AR in a run's ``neuron_concepts.csv`` (ties: more
    verified hypotheses, then the higher selectivity ratio, then the lower id), best first; fewer (with a
    warning) when fewer are verified, and an error naming the file when none is."""
    rows = [r for r in read_csv(neuron_concepts_csv) if r["status"] == "verified"]
    if not rows:
        raise EvaluateError(
            f"{neuron_concepts_csv}: no neuron is verified, so evaluate.ablate_neurons.{model}: best_verified has "
            "nothing to zero; name the neurons instead"
        )
    ranked = rank_verified(rows)
    if len(ranked) < n:
        log.warning(
            "%s: best_verified %d, but only %d neurons are verified", neuron_concepts_csv, n, len(ranked)
        )
    chosen = [int(r["neuron"]) for r in ranked[:n]]
    log.info("best verified neurons of %s: %s", neuron_concepts_csv, chosen)
    return chosen


def zero_channel(output: torch.Tensor, neuron: int) -> torch.Tensor:
    """The layer output with one neuron set to 0 (dim 1 of [B, C, ...] maps and [B, C]; last dim of tokens)."""
    out = output.clone()
    if out.dim() == 3:
        out[..., neuron] = 0
    else:
        out[:, neuron] = 0
    return out


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (images per class [n_classes], accuracy per class [n_classes], NaN where a class has no image)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    correct = np.bincount(labels[np.asarray(pred) == labels], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    return counts, acc


def accuracy_drop_table(
    base_pred: np.ndarray,
    ablated_pred: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    class_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Classes with images, by accuracy drop (base - ablated), largest first; ties by class index."""
    counts, base = per_class_accuracy(base_pred, labels, n_classes)
    _, abl = per_class_accuracy(ablated_pred, labels, n_classes)
    rows = []
    for c in np.flatnonzero(counts > 0):
        rows.append(
            {
                "class": int(c),
                "name": class_names[c] if class_names else str(c),
                "n_images": int(counts[c]),
                "accuracy": float(base[c]),
                "ablated_accuracy": float(abl[c]),
                "drop": float(base[c] - abl[c]),
            }
        )
    rows.sort(key=lambda r: (-r["drop"], r["class"]))
    return rows


def plot_accuracy_drop(doc: dict[str, Any], out_png: str, top: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["classes"][:top]
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(rows), 1) + 1.2))
    names = [r["name"][:40] for r in rows][::-1]
    drops = [100 * r["drop"] for r in rows][::-1]
    ax.barh(range(len(rows)), drops, color=["#c0392b" if d > 0 else "#7f8c8d" for d in drops])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("accuracy drop when zeroed (percentage points)")
    ax.set_title(
        f"{doc['model']} {doc['layer']} neuron {doc['neuron']}: overall "
        f"{100 * doc['accuracy']:.1f}% -> {100 * doc['ablated_accuracy']:.1f}%",
        fontsize=9,
    )
    ax.axvline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    out = model.model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    model._captured.clear()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise EvaluateError(
            f"model {model.name!r}: neuron ablation needs class logits [B, classes], the forward "
            f"pass returned {getattr(out, 'shape', type(out).__name__)}"
        )
    return out.float()


@torch.inference_mode()
def run_neuron_ablation(
    model: Any,
    probe: Any,
    neurons: Sequence[int],
    out_dir: str,
    class_names: Sequence[str] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    strict_names: bool = True,
) -> dict[int, dict[str, Any]]:
    """Zero each neuron in turn; per-class accuracy drop on the labelled probe set (see the module docstring).
    One pass over the probe set: every batch runs once intact and once per ablated neuron. ``class_names``
    (one per model output) label the classes; with ``strict_names=False`` a list of another length (a probe's
    folder names) is ignored with a warning instead of an error."""
    from ..probe import _collate, _ProbeDataset

    neurons = [int(n) for n in neurons]
    bad = [n for n in neurons if not 0 <= n < model.n_neurons]
    if bad:
        raise EvaluateError(
            f"evaluate.ablate_neurons.{model.name}: neuron(s) {bad} do not exist in layer {model.layer!r} of model "
            f"{model.name!r} ({model.n_neurons} neurons)"
        )
    if probe.labels is None:
        raise EvaluateError(
            f"evaluate.ablate_neurons needs a labelled probe set; probe {probe.name!r} "
            f"({probe.root}) has no class labels"
        )
    module = dict(model.model.named_modules())[model.layer]
    current: list[int | None] = [None]

    def hook(_m: Any, _i: Any, output: Any) -> Any:
        if current[0] is None:
            return None
        if isinstance(output, (tuple, list)):
            return type(output)([zero_channel(output[0], current[0]), *output[1:]])
        return zero_channel(output, current[0])

    handle = module.register_forward_hook(hook)
    loader = torch.utils.data.DataLoader(
        _ProbeDataset(probe, model.preprocess),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    preds: dict[int | None, list[np.ndarray]] = {None: [], **{n: [] for n in neurons}}
    labels: list[int] = []
    n_classes = None
    try:
        for idx, xs, bad_imgs in loader:
            for _i, msg in bad_imgs:
                log.warning("neuron ablation: skipped unreadable image %s", msg)
            if xs is None:
                continue
            x = xs.to(model.device)
            labels += [int(probe.labels[i]) for i in idx]
            for n in [None, *neurons]:
                current[0] = n
                logits = _logits(model, x)
                n_classes = logits.shape[1]
                preds[n].append(logits.argmax(1).cpu().numpy())
    finally:
        current[0] = None
        handle.remove()
    if not labels:
        raise EvaluateError(f"probe {probe.name!r}: no readable image for the neuron ablation")
    y = np.array(labels, dtype=np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise EvaluateError(
            f"probe {probe.name!r} has class labels up to {int(y.max())} but model {model.name!r} "
            f"outputs {n_classes} classes; the probe's classes must be the model's classes, in order"
        )
    if class_names is not None and len(class_names) != n_classes:
        msg = f"{len(class_names)} class names for the {n_classes} outputs of model {model.name!r}"
        if strict_names:
            raise EvaluateError(msg + " (models.<name>.ground_truth must list one class per output)")
        log.warning("%s; classes are shown by index", msg)
        class_names = None
    base = np.concatenate(preds[None])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    docs = {}
    for n in neurons:
        abl = np.concatenate(preds[n])
        doc = {
            "model": model.name,
            "layer": model.layer,
            "neuron": n,
            "probe": probe.name,
            "n_images": int(len(y)),
            "accuracy": float(np.mean(base == y)),
            "ablated_accuracy": float(np.mean(abl == y)),
            "n_changed_predictions": int(np.sum(base != abl)),
            "classes": accuracy_drop_table(base, abl, y, n_classes, class_names),
        }
        write_json(os.path.join(out_dir, f"{n}.json"), doc)
        plot_accuracy_drop(doc, os.path.join(out_dir, f"{n}.png"))
        docs[n] = doc
        top = doc["classes"][0] if doc["classes"] else None
        log.info(
            "neuron %d zeroed: accuracy %.4f -> %.4f; largest drop %s",
            n,
            doc["accuracy"],
            doc["ablated_accuracy"],
            f"{top['name']} ({top['drop']:+.3f})" if top else "-",
        )
    return docs
