"""Image sets (the config's ``probes:``), keyed by ``kind``: the images the probe stage runs a model on.

"Probe" names the stage (one activation pass, :mod:`sieve.probe`); this module holds the image sets it reads.
Every image set is an :class:`ImageSet`: a sorted list of items (path relative to the probe root, and a
class label where there is one) plus ``load(i)``, which returns a PIL image or raises :class:`BadImage`.
Later stages (crops, CLIP-Dissect's whole-image embeddings, neuron ablation) reopen the same set through
:func:`open_image_set`, so indices match the HDF5's ``images`` everywhere.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..config import schema_default
from ..images import open_rgb, open_rgb_reduced
from . import BackendError, Registry

log = logging.getLogger(__name__)

IMAGE_SETS = Registry("probe set", key="kind")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


class BadImage(Exception):
    """An unreadable or corrupt image: skipped, counted and listed, never fatal on its own."""


@dataclass
class ImageSet:
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
        return self._read(i, open_rgb)

    def load_reduced(
        self, i: int, request: Callable[[int, int], tuple[int, int]]
    ) -> tuple[Image.Image, tuple[int, int]]:
        """:meth:`load`, decoding a JPEG file at a reduced scale when ``request(width, height)`` allows it
        (:func:`sieve.images.open_rgb_reduced`): (image, the file's full width and height). Images from a
        ``loader`` come at their full size."""
        if self.loader is not None:
            img = self.loader(i)
            return img, img.size
        return self._read(i, lambda path: open_rgb_reduced(path, request))

    def _read(self, i: int, open_file: Callable[[str], Any]) -> Any:
        """``open_file`` of image ``i``'s file; what Pillow raises for an unreadable one becomes BadImage."""
        path = os.path.join(self.root, self.paths[i])
        try:
            return open_file(path)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            raise BadImage(f"{path}: {exc}") from exc


def _limit(
    paths: list[str], labels: list[int] | None, spec: dict[str, Any]
) -> tuple[list[str], list[int] | None]:
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


@IMAGE_SETS.register("imagefolder")
def _imagefolder(name: str, spec: dict[str, Any]) -> ImageSet:
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
    return ImageSet(name, str(root), paths, labels, classes, info={"kind": "imagefolder", "path": str(root)})


@IMAGE_SETS.register("filelist")
def _filelist(name: str, spec: dict[str, Any]) -> ImageSet:
    """A text file of image paths, one per line (blank lines and ``#`` comments ignored); relative paths are
    resolved against ``root`` (default: the list's folder). An optional second whitespace-separated column
    is an integer class label."""
    listing = _require_dir(spec, "filelist")
    if not listing.is_file():
        raise BackendError(f"probe filelist is not a file: {listing}")
    root = Path(os.path.expanduser(spec.get("root", str(listing.parent))))
    paths: list[str] = []
    labels: list[int] = []
    for line in listing.read_text(encoding="utf-8").splitlines():
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
    return ImageSet(name, str(root), paths, lab, None, info={"kind": "filelist", "path": str(listing)})


def _dataset_root(spec: dict[str, Any], kind: str) -> Path:
    if "path" not in spec:
        raise BackendError(f"probes: kind {kind} needs 'path' (the dataset folder)")
    root = Path(os.path.expanduser(spec["path"]))
    if spec.get("download", schema_default("probes.*.download")):
        import torchvision

        from .offline import require_online

        require_online(kind, f"{kind} probe set", cached=root.exists() and any(root.iterdir()))
        split = spec.get("split", schema_default("probes.*.split"))
        if kind == "places365":  # torchvision fetches and checks (md5) the archives, we read the layout
            torchvision.datasets.Places365(str(root), split=split, small=True, download=True)
        else:
            torchvision.datasets.Imagenette(str(root), split=split, size="320px", download=True)
    elif not root.exists():
        raise BackendError(f"probe path does not exist: {root} (set download: true to fetch {kind})")
    return root


@IMAGE_SETS.register("places365")
def _places365(name: str, spec: dict[str, Any]) -> ImageSet:
    """The Places365 layout torchvision downloads: ``categories_places365.txt`` (``/a/airfield 0``),
    ``places365_{split}.txt`` (``Places365_val_00000001.jpg 165``) and images under ``{split}_256/``
    (or ``{split}_large/``)."""
    root = _dataset_root(spec, "places365")
    split = spec.get("split", schema_default("probes.*.split"))
    cats_file, list_file = root / "categories_places365.txt", root / f"places365_{split}.txt"
    for f in (cats_file, list_file):
        if not f.is_file():
            raise BackendError(f"places365 probe set: {f} is missing (set download: true to fetch it)")
    classes: list[str] = []
    for line in cats_file.read_text().splitlines():
        if line.strip():
            cname, idx = line.rsplit(None, 1)
            classes.append(cname)
            if int(idx) != len(classes) - 1:
                raise BackendError(f"{cats_file}: categories are not in index order at {line!r}")
    img_dir = next((d for d in (f"{split}_256", f"{split}_large") if (root / d).is_dir()), None)
    if img_dir is None:
        raise BackendError(f"places365 probe set: no {split}_256/ or {split}_large/ folder in {root}")
    pairs = []
    for line in list_file.read_text().splitlines():
        parts = line.split()
        if parts:
            pairs.append((f"{img_dir}/{parts[0].lstrip('/')}", int(parts[1]) if len(parts) > 1 else -1))
    pairs.sort()
    paths, labels = _limit([p for p, _ in pairs], [t for _, t in pairs], spec)
    return ImageSet(
        name, str(root), paths, labels, classes, info={"kind": "places365", "path": str(root), "split": split}
    )


@IMAGE_SETS.register("imagenette")
def _imagenette(name: str, spec: dict[str, Any]) -> ImageSet:
    """The Imagenette layout: ``imagenette2-320/{split}/{wnid}/*.JPEG`` (the 320 px version torchvision
    downloads; ``imagenette2`` and ``imagenette2-160`` are used if that is what the folder holds)."""
    import torchvision

    root = _dataset_root(spec, "imagenette")
    split = spec.get("split", schema_default("probes.*.split"))
    base = next(
        (
            root / v / split
            for v in ("imagenette2-320", "imagenette2", "imagenette2-160")
            if (root / v / split).is_dir()
        ),
        None,
    )
    if base is None:
        raise BackendError(f"imagenette probe set: no imagenette2-320/{split}/ folder in {root}")
    names = torchvision.datasets.Imagenette._WNID_TO_CLASS
    wnids = sorted(d.name for d in base.iterdir() if d.is_dir())
    classes = [names.get(w, (w,))[0] for w in wnids]
    pairs = sorted(
        (str(p.relative_to(root)).replace(os.sep, "/"), i)
        for i, w in enumerate(wnids)
        for p in (base / w).iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS
    )
    paths, labels = _limit([p for p, _ in pairs], [t for _, t in pairs], spec)
    return ImageSet(
        name,
        str(root),
        paths,
        labels,
        classes,
        info={"kind": "imagenette", "path": str(root), "split": split},
    )


def open_image_set(name: str, spec: dict[str, Any]) -> ImageSet:
    """The one entry point: config spec -> ImageSet."""
    return IMAGE_SETS.get(spec.get("kind"))(name, spec)
