"""Probe image sets, keyed by the config's ``kind``.

Every probe set is a :class:`ProbeSet`: a sorted list of items (path relative to the probe root, and a
class label where there is one) plus ``load(i)``, which returns a PIL image or raises :class:`BadImage`.
Later stages (crops, CLIP-Dissect's whole-image embeddings, neuron ablation) reopen the same set through
:func:`open_probe`, so indices match the HDF5's ``images`` everywhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from . import BackendError, Registry

log = logging.getLogger(__name__)

PROBES = Registry("probe set", key="kind")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class BadImage(Exception):
    """An unreadable or corrupt image: skipped, counted and listed, never fatal on its own."""


@dataclass
class ProbeSet:
    name: str
    root: str
    paths: list[str]
    labels: list[int] | None = None
    classes: list[str] | None = None
    loader: Callable[[int], Image.Image] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Image.Image:
        if self.loader is not None:
            return self.loader(i)
        path = os.path.join(self.root, self.paths[i])
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise BadImage(f"{path}: {exc}") from exc


def _limit(paths: list[str], labels: list[int] | None, spec: dict[str, Any]) -> tuple[list[str], list[int] | None]:
    n = spec.get("limit")
    if n:
        paths = paths[:n]
        labels = labels[:n] if labels is not None else None
    return paths, labels


def _require_dir(spec: dict[str, Any], what: str) -> Path:
    if "path" not in spec:
        raise BackendError(f"probes: kind {what} needs 'path'")
    root = Path(os.path.expanduser(spec["path"]))
    if not root.exists():
        raise BackendError(f"probe path does not exist: {root}")
    return root


@PROBES.register("imagefolder")
def _imagefolder(name: str, spec: dict[str, Any]) -> ProbeSet:
    """All images under ``path``, recursively, sorted; the first folder level is the class label if every
    image sits in one (the ImageNet / torchvision ImageFolder layout)."""
    root = _require_dir(spec, "imagefolder")
    if not root.is_dir():
        raise BackendError(f"probe path is not a folder: {root}")
    paths = sorted(
        str(p.relative_to(root)).replace(os.sep, "/")
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )
    if not paths:
        raise BackendError(f"probe folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    labels = classes = None
    if all("/" in p for p in paths):
        classes = sorted({p.split("/", 1)[0] for p in paths})
        index = {c: i for i, c in enumerate(classes)}
        labels = [index[p.split("/", 1)[0]] for p in paths]
    paths, labels = _limit(paths, labels, spec)
    return ProbeSet(name, str(root), paths, labels, classes, info={"kind": "imagefolder", "path": str(root)})


@PROBES.register("filelist")
def _filelist(name: str, spec: dict[str, Any]) -> ProbeSet:
    """A text file of image paths, one per line (blank lines and ``#`` comments ignored); relative paths are
    resolved against ``root`` (default: the list's folder). An optional second whitespace-separated column
    is an integer class label."""
    listing = _require_dir(spec, "filelist")
    if not listing.is_file():
        raise BackendError(f"probe filelist is not a file: {listing}")
    root = Path(os.path.expanduser(spec.get("root", str(listing.parent))))
    paths: list[str] = []
    labels: list[int] = []
    for ln, line in enumerate(listing.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            paths.append(parts[0])
            labels.append(int(parts[1]))
        else:
            paths.append(line)
    if not paths:
        raise BackendError(f"probe filelist {listing} lists no images")
    lab = labels if len(labels) == len(paths) else None
    paths, lab = _limit(paths, lab, spec)
    return ProbeSet(name, str(root), paths, lab, None, info={"kind": "filelist", "path": str(listing)})


def _torchvision_dataset(name: str, spec: dict[str, Any], kind: str) -> ProbeSet:
    import torchvision

    if "path" not in spec:
        raise BackendError(f"probes: kind {kind} needs 'path' (the dataset folder)")
    root = Path(os.path.expanduser(spec["path"]))
    download = bool(spec.get("download", False))
    if download:
        from .offline import require_online

        require_online(kind, f"{kind} probe set", cached=root.exists() and any(root.iterdir()))
    elif not root.exists():
        raise BackendError(f"probe path does not exist: {root} (set download: true to fetch {kind})")
    split = spec.get("split", "val")
    try:
        if kind == "places365":
            ds = torchvision.datasets.Places365(str(root), split=split, small=True, download=download)
            samples = ds.imgs
            classes = list(ds.classes)
        else:
            ds = torchvision.datasets.Imagenette(str(root), split=split, size="320px", download=download)
            samples = ds._samples
            classes = [c[0] if isinstance(c, tuple) else c for c in ds.classes]
    except RuntimeError as exc:
        raise BackendError(f"{kind} probe set at {root}: {exc}") from exc
    pairs = sorted((os.path.relpath(p, root).replace(os.sep, "/"), int(t)) for p, t in samples)
    paths, labels = _limit([p for p, _ in pairs], [t for _, t in pairs], spec)
    return ProbeSet(name, str(root), paths, labels, classes, info={"kind": kind, "path": str(root), "split": split})


@PROBES.register("places365")
def _places365(name: str, spec: dict[str, Any]) -> ProbeSet:
    return _torchvision_dataset(name, spec, "places365")


@PROBES.register("imagenette")
def _imagenette(name: str, spec: dict[str, Any]) -> ProbeSet:
    return _torchvision_dataset(name, spec, "imagenette")


def open_probe(name: str, spec: dict[str, Any]) -> ProbeSet:
    """The one entry point: config spec -> ProbeSet."""
    return PROBES.get(spec.get("kind"))(name, spec)
