"""The content-addressed generation cache (layout in :mod:`sieve.verify`): entries, keys, atomic writes, images.

Importing this module does not import torch (the shard planner runs without it); the image helpers import it
where they run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import activation_spec
from ..images import open_rgb
from ..io import atomic_path, local_file_fingerprints, stable_hash

log = logging.getLogger(__name__)


def model_key(spec: dict[str, Any], dtype: Any) -> str:
    """Key of a target model's activations: its spec (without batch size) and resolved dtype."""
    return stable_hash("model", activation_spec(spec),
                       str(dtype).replace("torch.", ""), local_file_fingerprints(spec))


@dataclass
class CacheEntry:
    root: Path
    generator_key: str
    key: str

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.generator_key / self.key[:2] / self.key

    def acts_path(self, mkey: str) -> Path:
        return self.dir / "acts" / f"{mkey}.npz"

    def thumb(self, seed: int) -> Path:
        return self.dir / "thumbs" / f"{seed}.jpg"

    def image(self, seed: int) -> Path:
        return self.dir / "images" / f"{seed}.png"

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

    def read_acts(self, mkey: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self.acts_path(mkey)
        if not path.is_file():
            return None
        with np.load(path) as z:
            return z["seeds"].astype(np.int64), z["pooled"].astype(np.float32)

    def write_acts(self, mkey: str, rows: dict[int, np.ndarray]) -> None:
        """Merge ``rows`` (seed -> pooled [C]) into the stored activations, atomically."""
        old = self.read_acts(mkey)
        merged: dict[int, np.ndarray] = {}
        if old is not None:
            merged.update({int(s): v for s, v in zip(old[0], old[1], strict=True)})
        merged.update(rows)
        seeds = np.array(sorted(merged), dtype=np.int64)
        pooled = np.stack([merged[int(s)] for s in seeds]).astype(np.float32)
        path = self.acts_path(mkey)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, seeds=seeds, pooled=pooled)

        write_cache_file(path, write)


def write_cache_file(path: Path, write: Callable[[Path], None], attempts: int = 3) -> None:
    """Write one cache file under a temporary name, then rename it. Shard jobs share the cache (the stage-ablation
    variants' shards run beside the main ones) and each removes the temporary files it finds in the entries it
    starts on (:meth:`CacheEntry.clean_partials`): a temporary file removed under a running write is written
    again instead of failing the job."""
    for attempt in range(attempts):
        try:
            with atomic_path(path) as tmp:
                write(tmp)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            log.warning("the temporary file of %s was removed by another job; writing it again", path)


def quantize(images: Any) -> Any:
    """[B, 3, H, W] float in [0, 1] -> the same images as 8-bit values would hold them."""
    return (images.clamp(0, 1) * 255).round() / 255


def save_images(images: Any, paths: list[Path], kind: str, thumb_size: int) -> None:
    import torch.nn.functional as F
    from PIL import Image

    x = images
    if kind == "thumbnails" and max(x.shape[-2:]) > thumb_size:
        x = F.interpolate(x.float(), size=(thumb_size, thumb_size), mode="bilinear", antialias=True,
                          align_corners=False).clamp(0, 1)
    arr = (x * 255).round().to("cpu").byte().permute(0, 2, 3, 1).numpy()
    for a, path in zip(arr, paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(a)
        if kind == "thumbnails":
            write_cache_file(path, lambda tmp, img=img: img.save(tmp, format="JPEG", quality=90))
        else:
            write_cache_file(path, lambda tmp, img=img: img.save(tmp, format="PNG"))


def load_images(paths: list[Path]) -> Any:
    import torch

    arrs = [np.asarray(open_rgb(p)) for p in paths]
    return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255
