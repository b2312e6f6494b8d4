"""Training pictures and class names of the trained world.

A picture is drawn by the planted world's own renderer (:func:`~sieve.synthetic.world.place_object` and its
background, placement, noise and seeding), so the trained models see exactly the objects the probe scenes
and the world's generator show. Like an ImageNet picture it has one main object, which names its class,
and smaller clutter objects of other concepts around it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..backends.models import Preprocess
from ..io import write_text
from ..synthetic.world import TEXTURE_WORDS, World, _seed_words, background, finish, place_object
from .spec import TrainedWorld

SPLITS = ("train", "test")


def picture_class(tw: TrainedWorld, index: int) -> int:
    """Picture ``index`` shows class ``index mod n_classes``: every split is balanced by construction."""
    return index % tw.n_classes


def render_picture(tw: TrainedWorld, split: str, index: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Picture ``index`` of ``split``: (uint8 H x W x 3, objects drawn, the main one first).

    The main object (the class's concept, at one of ``main_sizes``) goes anywhere in the picture; then
    0..``clutter`` objects of other concepts at ``clutter_sizes``, with distinct colours and textures as in
    the world's probe scenes (a clutter object that does not fit is left out)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    world = tw.world
    rng = np.random.default_rng(_seed_words("trained", split, tw.picture_seed, index))
    canvas = background(world, rng)
    concept = tw.classes[picture_class(tw, index)]
    size = int(tw.main_sizes[int(rng.integers(len(tw.main_sizes)))])
    objects: list[dict[str, Any]] = []
    boxes: list[tuple[int, int, int]] = []
    used: set[str] = set()
    n_clutter = int(rng.integers(0, tw.clutter + 1))
    for k in range(1 + n_clutter):
        if k > 0:
            free = [c for c in world.object_concepts if _key(world, c) not in used]
            if not free:
                break
            concept = free[int(rng.integers(len(free)))]
            size = int(tw.clutter_sizes[int(rng.integers(len(tw.clutter_sizes)))])
        placed = place_object(canvas, world, rng, concept, size, boxes)
        if placed is None:
            continue
        pos = placed[1]
        used.add(_key(world, concept))
        objects.append({"concept": concept, "box": [pos[0], pos[1], size], "main": k == 0})
    return finish(canvas, world, rng), objects


def _key(world: World, concept: str) -> str:
    """What two objects of one picture may not share: a texture, or a colour (as in the probe scenes)."""
    return concept if concept in world.textures else concept.split(" ", 1)[0]


def render_split(
    tw: TrainedWorld, split: str, preprocess: Preprocess, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` pictures of ``split`` (all by default) as the model sees them -> (uint8 [N, 3, S, S]
    after ``preprocess.geometric``, int64 labels [N]). Normalisation is left to the batch (see train.py)."""
    n = (tw.n_train if split == "train" else tw.n_test) if n is None else n
    images = torch.empty(n, 3, preprocess.input_size, preprocess.input_size, dtype=torch.uint8)
    with _one_thread():
        for i in range(n):
            x = preprocess.geometric(Image.fromarray(render_picture(tw, split, i)[0]))
            images[i] = (x * 255).round().to(torch.uint8)  # to_tensor of 8-bit pixels: exact
    labels = torch.tensor([picture_class(tw, i) for i in range(n)], dtype=torch.int64)
    return images, labels


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Tiny per-picture tensor ops on several threads spend their time waiting on each other (on a loaded
    2-core machine: 10 ms a picture on 2 threads, 0.5 ms on 1, measured): run them on one thread and give
    the caller its thread count back."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def class_names(tw: TrainedWorld) -> list[str]:
    """One line per class index in CLIP-Dissect's ``imagenet_labels.txt`` format: the concept first, then
    the world's synonyms after commas (a texture's other words, e.g. ``stripes, stripe, striped``)."""
    lines = []
    for concept in tw.classes:
        words = [concept]
        if concept in tw.world.textures:
            words += [w for w, base in TEXTURE_WORDS.items() if base == concept and w != concept]
        lines.append(", ".join(words))
    return lines


def write_class_names(tw: TrainedWorld, path: str | os.PathLike[str]) -> list[str]:
    """Write :func:`class_names`, one per line (the ``ground_truth:`` file of the trained models)."""
    lines = class_names(tw)
    write_text(path, "\n".join(lines) + "\n")
    return lines


def class_folder(tw: TrainedWorld, index: int) -> str:
    """The folder of class ``index`` in a picture folder: its index, zero-padded, then its concept
    (``03_yellow_star``), so that the sorted folder names (an image folder's class labels,
    :mod:`sieve.backends.imagesets`) are the class indices in order and readable."""
    return f"{index:0{len(str(tw.n_classes - 1))}d}_{tw.classes[index].replace(' ', '_')}"


def write_pictures(tw: TrainedWorld, split: str, out_dir: str | os.PathLike[str]) -> int:
    """The pictures of ``split`` as PNG files in one folder per class index (``07/00123.png``): an image folder
    that ``kind: imagefolder`` reads with the classes as labels (the trained models' probe set, labelled for
    the neuron ablation). Returns the number written."""
    from pathlib import Path

    n = tw.n_train if split == "train" else tw.n_test
    out = Path(out_dir)
    for c in range(tw.n_classes):
        (out / class_folder(tw, c)).mkdir(parents=True, exist_ok=True)
    width = len(str(n - 1))
    for i in range(n):
        image = Image.fromarray(render_picture(tw, split, i)[0])
        image.save(out / class_folder(tw, picture_class(tw, i)) / f"{i:0{width}d}.png")
    return n
