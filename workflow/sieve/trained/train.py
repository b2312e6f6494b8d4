"""Deterministic training of the trained world's models, and their checkpoints.

Each model is built by the workflow's own ``source: torchvision`` loader from the spec :func:`model_spec`
returns, so what is trained, saved and later probed is one architecture by construction; the checkpoint is
a plain ``state_dict`` saved with ``torch.save``, loaded back by that loader exactly as a user's is.

Determinism: ``torch.manual_seed`` before the weights are made, one seeded generator for batch order and
flips, deterministic algorithms, and the caller's thread count. The same seed on the same machine and
torch build gives identical weights; across machines the metrics agree within a tolerance (float sums in
another order), not the bytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..backends.models import MODELS, Preprocess
from ..io import atomic_path, write_json
from .data import render_split
from .spec import ModelSettings, TrainedWorld

log = logging.getLogger(__name__)

PENULTIMATE = {"ResNet": "layer4", "VisionTransformer": "encoder.ln"}
FINAL = {"ResNet": "fc", "VisionTransformer": "heads.head"}


class TrainingFailed(RuntimeError):
    """A model did not learn: its held-out accuracy is under the spec's floor (``min_accuracy``)."""

    def __init__(self, model: str, accuracy: float, floor: float) -> None:
        self.model, self.accuracy, self.floor = model, accuracy, floor
        super().__init__(
            f"trained model {model!r}: held-out accuracy {accuracy:.3f} is under the floor "
            f"{floor:.3f} (training.min_accuracy / models.{model}.min_accuracy); train longer "
            f"(steps), or check the pictures and classes"
        )


@dataclass(frozen=True)
class TrainResult:
    """What training measured: held-out accuracy and per-class recall, time, and the loss at the end.

    ``cpu_seconds`` is the process's CPU time, all threads, next to the wall-clock ``train_seconds``: on a
    machine shared with other jobs the wall time says little, and at ``threads=1`` the CPU time is the work
    (with more threads than free cores it also counts threads spinning while they wait for each other)."""

    model: str
    accuracy: float
    recall: list[float]
    learned: list[int]
    train_seconds: float
    cpu_seconds: float
    steps: int
    images_seen: int
    final_loss: float
    threads: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def model_spec(
    tw: TrainedWorld,
    name: str,
    weights: str | None = None,
    layer: str = "penultimate",
    ground_truth: str | None = None,
) -> dict[str, Any]:
    """The ``models:`` entry of a config that loads model ``name`` through ``source: torchvision``."""
    m = tw.models[name]
    spec: dict[str, Any] = {
        "source": "torchvision",
        "arch": m.arch,
        "kwargs": tw.model_kwargs(name),
        "num_classes": tw.n_classes,
        "input_size": tw.world.image_size,
        "layer": layer,
    }
    if weights:
        spec["weights"] = str(weights)
    if ground_truth:
        spec["ground_truth"] = str(ground_truth)
    return spec


def training_params(tw: TrainedWorld, name: str) -> dict[str, Any]:
    """Everything that changes the trained weights (the rule's params: a change retrains, nothing else does)."""
    return {
        "world": tw.world.raw,
        "world_spec": tw.world_spec,
        "classes": list(tw.classes),
        "pictures": {
            "main_sizes": list(tw.main_sizes),
            "clutter": tw.clutter,
            "clutter_sizes": list(tw.clutter_sizes),
            "train": tw.n_train,
            "test": tw.n_test,
            "seed": tw.picture_seed,
        },
        "seed": tw.seed,
        "model": model_spec(tw, name),
        "settings": tw.models[name].__dict__,
    }


def build_model(tw: TrainedWorld, name: str) -> tuple[nn.Module, Preprocess]:
    """A freshly initialised model (from the global torch seed) and its preprocessing, via the loader."""
    return MODELS.get("torchvision")(model_spec(tw, name))


@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[torch.Generator]:
    """Seed torch, use deterministic algorithms and ``threads`` threads; restore the caller's settings."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def learning_rate(step: int, settings: ModelSettings) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``."""
    if step < settings.warmup:
        return settings.lr * (step + 1) / settings.warmup
    t = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
    return settings.lr * 0.5 * (1 + math.cos(math.pi * t))


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """``steps`` index batches, walking through one seeded permutation of ``n`` after another."""
    order = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        yield order[pos : pos + batch_size]
        pos += batch_size


def fit(
    model: nn.Module,
    preprocess: Preprocess,
    images: torch.Tensor,
    labels: torch.Tensor,
    settings: ModelSettings,
    gen: torch.Generator,
    progress: bool = True,
) -> float:
    """Train in place with AdamW and random horizontal flips (every world shape and texture is mirror
    symmetric left to right, so a flip keeps the class); returns the mean loss of the last 10% of steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    model.train()
    losses: list[float] = []
    bar = tqdm(
        total=settings.steps,
        desc=f"train {settings.name}",
        file=sys.stderr,
        disable=not progress,
        mininterval=2.0,
        ascii=True,
    )
    batch_size = min(settings.batch_size, len(labels))
    for step, idx in enumerate(_batches(len(labels), batch_size, settings.steps, gen)):
        x = images[idx].float() / 255.0
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        for group in opt.param_groups:
            group["lr"] = learning_rate(step, settings)
        loss = F.cross_entropy(model(preprocess.normalize(x)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10) :]
    return float(np.mean(tail))


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    preprocess: Preprocess,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int,
    batch_size: int = 256,
) -> tuple[float, np.ndarray]:
    """Held-out accuracy and per-class recall ([n_classes]; NaN for a class with no picture)."""
    model.eval()
    pred = torch.cat(
        [
            model(preprocess.normalize(images[i : i + batch_size].float() / 255.0)).argmax(1)
            for i in range(0, len(labels), batch_size)
        ]
    )
    hit = (pred == labels).numpy()
    y = labels.numpy()
    counts = np.bincount(y, minlength=n_classes)
    hits = np.bincount(y, weights=hit, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)
    return float(hit.mean()), recall


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """A plain ``state_dict`` (contiguous CPU tensors), written atomically with ``torch.save``."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_model(
    tw: TrainedWorld,
    name: str,
    threads: int = 2,
    progress: bool = True,
    data: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Render the pictures, train model ``name`` deterministically, measure it on the held-out split.

    ``data`` ({"train": (images, labels), "test": ...} from :func:`render_split`) skips the rendering when
    a caller trains several models on one set. Raises :class:`TrainingFailed` under the accuracy floor."""
    settings = tw.models[name]
    with deterministic(tw.seed, threads) as gen:
        model, pre = build_model(tw, name)
        if data is None:
            data = {split: render_split(tw, split, pre) for split in ("train", "test")}
        t0, c0 = time.perf_counter(), time.process_time()
        final_loss = fit(model, pre, *data["train"], settings, gen, progress)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        accuracy, recall = evaluate(model, pre, *data["test"], tw.n_classes)
    learned = [int(c) for c in np.flatnonzero(np.nan_to_num(recall) > tw.learned_recall)]
    result = TrainResult(
        model=name,
        accuracy=accuracy,
        recall=[float(r) for r in recall],
        learned=learned,
        train_seconds=round(seconds, 2),
        cpu_seconds=round(cpu, 2),
        steps=settings.steps,
        images_seen=settings.steps * min(settings.batch_size, len(data["train"][1])),
        final_loss=final_loss,
        threads=int(threads),
    )
    log.info(
        "trained %s: held-out accuracy %.3f, %d of %d classes learned (recall > %g), %.1f s on %d threads",
        name,
        accuracy,
        len(learned),
        tw.n_classes,
        tw.learned_recall,
        seconds,
        threads,
    )
    if accuracy < settings.min_accuracy:
        raise TrainingFailed(name, accuracy, settings.min_accuracy)
    return model, result


def run_train(
    spec: str | None, model: str, checkpoint: str, metrics_json: str, threads: int = 2, progress: bool = True
) -> TrainResult:
    """The training rule's entry point: checkpoint + metrics JSON (accuracy, recall, time, loader spec)."""
    from .spec import load_trained_world

    tw = load_trained_world(spec)
    if model not in tw.models:
        raise KeyError(f"trained world {tw.source} has no model {model!r} (it has {', '.join(tw.models)})")
    net, result = train_model(tw, model, threads, progress)
    save_checkpoint(net, checkpoint)
    write_json(
        metrics_json,
        {
            **result.as_dict(),
            "min_accuracy": tw.models[model].min_accuracy,
            "classes": list(tw.classes),
            "model_spec": model_spec(tw, model, weights=checkpoint),
            "penultimate": PENULTIMATE[tw.models[model].arch],
            "final": FINAL[tw.models[model].arch],
            "torch": torch.__version__,
        },
    )
    return result
