"""The content-addressed generation cache (layout in :mod:`sieve.verify`): entries, keys, atomic writes,
checksums, images.

Every cache file is encoded in memory, written under a temporary name and renamed (:func:`write_cache_file`); the
SHA-256 of those bytes is then recorded beside it (``<file>.sha256``, :func:`checksum_path`). A reader checks the file against that record
(:func:`file_status`): a file that is missing, or whose bytes no longer match, counts as missing and is generated
again. A file without a record (a cache written before checksums existed) is accepted when it loads, and gets its
record from the next planning job (:func:`adopt_checksums`), so an existing cache stays valid.

Importing this module does not import torch (the shard planner runs without it); the image helpers import it
where they run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import activation_spec
from ..images import open_rgb
from ..io import local_file_fingerprints, sha256_file, stable_hash, write_bytes_atomic

log = logging.getLogger(__name__)

CHECKSUM_SUFFIX = ".sha256"
# What a damaged .npz raises when it is loaded (truncated: BadZipFile, empty: EOFError, wrong members: KeyError).
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)

# The states of a cache file (:func:`file_status`).
MISSING, INTACT, UNRECORDED, DAMAGED = "missing", "intact", "unrecorded", "damaged"


class CacheDamage(Exception):
    """A cache file that is missing, unreadable or does not match its recorded checksum."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"cache file {path} {problem}")
        self.path = path


def checksum_path(path: Path) -> Path:
    """Where the SHA-256 of a cache file is recorded: beside it, ``<name>.sha256``."""
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def recorded_checksum(path: Path) -> str | None:
    try:
        return checksum_path(path).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):  # none, or not a readable record: the file counts as unrecorded
        return None


def file_status(path: Path, data: bytes | None = None) -> str:
    """``missing``, ``intact`` (matches its recorded SHA-256), ``damaged`` (does not) or ``unrecorded`` (no record:
    written before checksums existed). ``data``: the file's bytes when the caller has read them already."""
    if data is None and not path.is_file():
        return MISSING
    want = recorded_checksum(path)
    if want is None:
        return UNRECORDED
    got = hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path)
    return INTACT if got == want else DAMAGED


def usable(path: Path) -> bool:
    """A kept image or thumbnail that can be trusted: present and not damaged (see :func:`file_status`)."""
    status = file_status(path)
    if status == DAMAGED:
        log.warning("cache file %s does not match its recorded checksum: treated as missing", path)
    return status in (INTACT, UNRECORDED)


def load_acts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an activation file whose checksum was verified; raise :class:`CacheDamage` naming it otherwise."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CacheDamage(path, "is missing") from None
    status = file_status(path, data)
    if status == DAMAGED:
        raise CacheDamage(path, "does not match its recorded checksum")
    try:
        with np.load(io.BytesIO(data)) as z:
            seeds, pooled = z["seeds"].astype(np.int64), z["pooled"].astype(np.float32)
    except NPZ_ERRORS as exc:
        raise CacheDamage(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if pooled.ndim != 2 or seeds.shape != (pooled.shape[0],):
        raise CacheDamage(path, f"holds seeds {seeds.shape} and activations {pooled.shape} that do not match")
    return seeds, pooled


def adopt_checksums(paths: Iterable[Path]) -> int:
    """Record the checksum of cache files that have none (a cache written before checksums existed); an
    activation file is adopted only when it loads. Returns how many were recorded. Runs in jobs only (a dry run
    writes nothing)."""
    n = 0
    for path in paths:
        if file_status(path) != UNRECORDED:
            continue
        if path.suffix == ".npz":
            try:
                load_acts(path)
            except CacheDamage as exc:
                log.warning("%s: it will be generated again", exc)
                continue
        record_checksum(path, sha256_file(path))
        n += 1
    return n


def record_checksum(path: Path, digest: str) -> None:
    _write_atomic(checksum_path(path), (digest + "\n").encode("ascii"))


def model_key(spec: dict[str, Any], dtype: Any) -> str:
    """Key of a target model's activations: its spec (without batch size, and without the requested ``dtype``:
    ``auto`` on a CPU and ``float32`` are one measurement) and the resolved ``dtype``."""
    measured = {k: v for k, v in activation_spec(spec).items() if k != "dtype"}
    return stable_hash("model", measured, str(dtype).replace("torch.", ""), local_file_fingerprints(spec))


@dataclass(frozen=True)
class CacheEntry:
    root: Path
    generator_key: str
    key: str

    # The entry's folders are built once: a shard asks for thousands of its paths (planning, writing, the
    # manifest), and each pathlib join costs microseconds.
    @functools.cached_property
    def dir(self) -> Path:
        return Path(self.root) / self.generator_key / self.key[:2] / self.key

    @functools.cached_property
    def _thumbs(self) -> Path:
        return self.dir / "thumbs"

    @functools.cached_property
    def _images(self) -> Path:
        return self.dir / "images"

    def acts_path(self, mkey: str) -> Path:
        return self.dir / "acts" / f"{mkey}.npz"

    def thumb(self, seed: int) -> Path:
        return self._thumbs / f"{seed}.jpg"

    def image(self, seed: int) -> Path:
        return self._images / f"{seed}.png"

    def clean_partials(self) -> int:
        """Remove temporary files a killed job left behind (never a complete file). A job sharing the cache may be
        writing one of them right now: :func:`write_cache_file` then writes it again."""
        n = 0
        if self.dir.is_dir():
            for p in self.dir.rglob(".*.partial"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    n += 1
        return n

    def files(self, model_keys: Iterable[str], seeds: Iterable[int]) -> list[Path]:
        """Every file of this entry that the given models and seeds can have (present or not)."""
        seeds = list(seeds)
        return (
            [self.acts_path(mk) for mk in model_keys]
            + [self.thumb(s) for s in seeds]
            + [self.image(s) for s in seeds]
        )

    def read_acts(self, mkey: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(seeds, pooled) of one model, or None when they are missing or damaged (then they are generated
        again: a damaged file is logged with its path)."""
        path = self.acts_path(mkey)
        if not path.is_file():
            return None
        try:
            return load_acts(path)
        except CacheDamage as exc:
            log.warning("%s: treated as missing, it will be generated again", exc)
            return None

    def write_acts(self, mkey: str, rows: dict[int, np.ndarray]) -> None:
        """Merge ``rows`` (seed -> pooled [C]) into the stored activations, atomically."""
        old = self.read_acts(mkey)
        merged: dict[int, np.ndarray] = {}
        if old is not None:
            merged.update({int(s): v for s, v in zip(old[0], old[1], strict=True)})
        merged.update(rows)
        seeds = np.array(sorted(merged), dtype=np.int64)
        pooled = np.stack([merged[int(s)] for s in seeds]).astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, seeds=seeds, pooled=pooled)
        write_cache_file(self.acts_path(mkey), buf.getvalue())


def write_cache_file(path: Path, data: bytes, attempts: int = 3) -> None:
    """Write one cache file's bytes under a temporary name and rename it, then record their SHA-256 beside it
    (hashed from memory: the file is not read back). Shard jobs share the cache and each removes the temporary
    files it finds in the entries it starts on (:meth:`CacheEntry.clean_partials`): a temporary file removed
    under a running write is written again instead of failing the job."""
    _write_atomic(path, data, attempts)
    record_checksum(path, hashlib.sha256(data).hexdigest())


def _write_atomic(path: Path, data: bytes, attempts: int = 3) -> None:
    for attempt in range(attempts):
        try:
            write_bytes_atomic(path, data)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            log.warning("the temporary file of %s was removed by another job; writing it again", path)


def quantize(images: Any) -> Any:
    """[B, 3, H, W] float in [0, 1] -> the same images as 8-bit values would hold them."""
    return (images.clamp(0, 1) * 255).round() / 255


def image_bytes(images: Any, kind: str, thumb_size: int) -> Any:
    """[B, 3, H, W] images in [0, 1] -> the uint8 [B, h, w, 3] tensor that :func:`write_images` encodes,
    still on the images' device (thumbnails resized there): the host copy moves a quarter of the float bytes,
    and thumbnails fewer still."""
    import torch.nn.functional as F

    x = images
    if kind == "thumbnails" and max(x.shape[-2:]) > thumb_size:
        x = F.interpolate(
            x.float(), size=(thumb_size, thumb_size), mode="bilinear", antialias=True, align_corners=False
        ).clamp(0, 1)
    return (x * 255).round().byte().permute(0, 2, 3, 1)


def write_images(arr: np.ndarray, paths: list[Path], kind: str) -> None:
    """Encode uint8 [B, h, w, 3] images and write each as a cache file: a JPEG (quality 90) thumbnail or a
    PNG full image. Needs no torch (the shard's writer thread runs it)."""
    from PIL import Image

    for a, path in zip(arr, paths, strict=True):
        buf = io.BytesIO()
        if kind == "thumbnails":
            Image.fromarray(a).save(buf, format="JPEG", quality=90)
        else:
            Image.fromarray(a).save(buf, format="PNG")
        write_cache_file(path, buf.getvalue())


def save_images(images: Any, paths: list[Path], kind: str, thumb_size: int) -> None:
    """Thumbnails or full images of a batch, encoded and written here (:func:`image_bytes`, then
    :func:`write_images`)."""
    write_images(image_bytes(images, kind, thumb_size).cpu().numpy(), paths, kind)


def load_images(paths: list[Path]) -> Any:
    import torch

    arrs = [np.asarray(open_rgb(p)) for p in paths]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255
