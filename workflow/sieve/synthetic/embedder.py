"""The world's CLIP: an image side and a text side in one space.

The space has one axis per colour, shape and texture of the world, one "background" axis, and the remaining
axes for words the world does not know (each such word gets a fixed pseudo-random direction there, from a
hash of the word: unknown text is fine and lands far from every picture).

- Text: the sum of its words' directions (colour ``COLOUR_WEIGHT``, shape ``SHAPE_WEIGHT``, texture
  ``TEXTURE_WEIGHT``), normalised. "red circle" and "red" share the red axis, "red circle" and
  "blue circle" the circle axis.
- Image: the objects found in the picture (connected regions of a palette colour, or of black/white texture),
  each described the same way: its colour, its shape (soft, from two scale-free measures: fill of the bounding
  box and solidity) or its texture (soft, from the dark share and the direction of light/dark transitions),
  weighted by its area (a picture with no object is the "background" direction). Scale-free measures make crops of any size and aspect
  ratio (Hypothesize resizes them) land in the same place.

So a crop of a red circle is close to "red circle" (cosine ~1), farther from "red" (~0.78), "blue circle" and
"red square" (~0.4-0.6), and far from "dog" (~0).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .model import R_IN, R_OUT
from .world import World, draw_object, shape_mask

COLOUR_WEIGHT = 1.0
SHAPE_WEIGHT = 0.8
TEXTURE_WEIGHT = 1.0
MIN_PIXELS = 10  # smaller regions (after resizing to image_size) are noise
SOFTNESS = 0.06  # width of the soft shape/texture assignment


class SyntheticEmbedder:
    def __init__(self, world: World, dim: int = 128) -> None:
        self.world = world
        self.name = f"synthetic({world.source})"
        self.image_size = world.image_size
        cols, shapes, texs = list(world.colours), list(world.shapes), list(world.textures)
        self.axes = {f"colour:{c}": i for i, c in enumerate(cols)}
        self.axes.update({f"shape:{s}": len(cols) + i for i, s in enumerate(shapes)})
        self.axes.update({f"texture:{t}": len(cols) + len(shapes) + i for i, t in enumerate(texs)})
        self.axes["background"] = len(self.axes)
        self.n_known = len(self.axes)
        self.dim = max(dim, self.n_known + 16)
        self.palette = np.array([world.colours[c] for c in cols], np.float32)  # [C, 3]
        self.shape_protos = {s: _shape_features(shape_mask(s, world.generated_size) > 0.5) for s in shapes}
        self.texture_protos = {t: self._texture_proto(t) for t in texs}

    # --------------------------------------------------------------------------------------------- text
    def _word_vec(self, word: str) -> np.ndarray:
        return _unknown_direction(word, self.dim, self.n_known)

    def text_vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float64)
        w = self.world
        for word in re.findall(r"[a-z]+", text.lower()):
            parts = w.parse(word)
            if parts["colour"]:
                v[self.axes[f"colour:{parts['colour']}"]] += COLOUR_WEIGHT
            elif parts["shape"]:
                v[self.axes[f"shape:{parts['shape']}"]] += SHAPE_WEIGHT
            elif parts["texture"]:
                v[self.axes[f"texture:{parts['texture']}"]] += TEXTURE_WEIGHT
            else:
                v += self._word_vec(word)
        if not np.any(v):
            v += self._word_vec("")  # empty text: a direction of its own
        return v / np.linalg.norm(v)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            raise TypeError("encode_text expects a list of strings")
        out = np.stack([self.text_vector(str(t)) for t in texts]) if len(texts) else np.zeros((0, self.dim))
        return torch.from_numpy(out.astype(np.float32))

    # -------------------------------------------------------------------------------------------- image
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"encode_images expects [B, 3, H, W], got {tuple(images.shape)}")
        x = images.detach().to("cpu", torch.float32).clamp(0, 1)
        s = self.image_size
        if x.shape[-2:] != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
        arr = x.permute(0, 2, 3, 1).numpy()
        out = np.stack([self.image_vector(a) for a in arr]) if len(arr) else np.zeros((0, self.dim))
        return torch.from_numpy(out.astype(np.float32))

    def objects(self, img: np.ndarray) -> list[dict]:
        """The objects of one H x W x 3 image in [0, 1]: kind, name, area and its soft description."""
        found: list[dict] = []
        dist = np.abs(img[:, :, None, :] - self.palette[None, None]).sum(-1)  # [H, W, C]
        member = np.clip((R_OUT - dist) / (R_OUT - R_IN), 0, 1) > 0.5
        for c, name in enumerate(self.world.colours):
            labels, n = ndimage.label(member[:, :, c])
            for lab in range(1, n + 1):
                region = labels == lab
                area = int(region.sum())
                if area < MIN_PIXELS:
                    continue
                feats = _shape_features(region)
                found.append(
                    {"kind": "colour", "colour": name, "area": area, "shape": _soft(feats, self.shape_protos)}
                )
        if self.world.textures:
            lum = img.mean(-1)
            sat = img.max(-1) - img.min(-1)
            bw = ((lum < 0.3) | (lum > 0.7)) & (sat < 0.25)
            region_all = ndimage.binary_opening(ndimage.binary_closing(bw, iterations=2))
            labels, n = ndimage.label(region_all)
            for lab in range(1, n + 1):
                region = labels == lab
                area = int(region.sum())
                if area < 3 * MIN_PIXELS:
                    continue
                feats = _texture_features(lum, region)
                if feats is None:
                    continue
                found.append({"kind": "texture", "area": area, "texture": _soft(feats, self.texture_protos)})
        return found

    def image_vector(self, img: np.ndarray) -> np.ndarray:
        v = np.zeros(self.dim, np.float64)
        total = img.shape[0] * img.shape[1]
        covered = 0
        for obj in self.objects(img):
            o = np.zeros(self.dim)
            if obj["kind"] == "colour":
                o[self.axes[f"colour:{obj['colour']}"]] = COLOUR_WEIGHT
                for s, p in obj["shape"].items():
                    o[self.axes[f"shape:{s}"]] = SHAPE_WEIGHT * p
            else:
                for t, p in obj["texture"].items():
                    o[self.axes[f"texture:{t}"]] = TEXTURE_WEIGHT * p
            v += obj["area"] / total * o / np.linalg.norm(o)
            covered += obj["area"]
        if not covered:  # nothing of the world in the picture: the background direction
            v[self.axes["background"]] = 1.0
        return v / np.linalg.norm(v)

    def _texture_proto(self, texture: str) -> np.ndarray:
        side = 3 * self.world.texture_period
        canvas = np.full((side, side, 3), 0.5, np.float32)
        draw_object(canvas, self.world, 0, 0, side, None, None, texture)
        feats = _texture_features(canvas.mean(-1), np.ones((side, side), bool))
        assert feats is not None
        return feats


def _shape_features(region: np.ndarray) -> np.ndarray:
    """(fill of the bounding box, solidity = area / convex hull area): both unchanged by scaling."""
    ys, xs = np.nonzero(region)
    area = len(ys)
    if area < 3:
        return np.array([0.0, 0.0])
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    fill = area / (h * w)
    return np.array([fill, area / _hull_area(ys, xs)])


def _hull_area(ys: np.ndarray, xs: np.ndarray) -> float:
    """Area of the convex hull of the pixel squares (their corners)."""
    from scipy.spatial import ConvexHull, QhullError

    pts = np.unique(
        np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]), axis=0
    )
    try:
        hull = float(ConvexHull(pts.astype(np.float64)).volume)  # in 2-D, "volume" is the area
    except (QhullError, ValueError):
        hull = 0.0
    return max(hull, float(len(xs)))


def _texture_features(lum: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """(dark share, share of light/dark transitions that run horizontally): both unchanged by scaling."""
    dark = lum < 0.5
    inside = region
    n = int(inside.sum())
    if n == 0:
        return None
    d_share = float((dark & inside).sum()) / n
    both_h = inside[:, 1:] & inside[:, :-1]
    both_v = inside[1:, :] & inside[:-1, :]
    th = float(((dark[:, 1:] != dark[:, :-1]) & both_h).sum())
    tv = float(((dark[1:, :] != dark[:-1, :]) & both_v).sum())
    if th + tv < 0.02 * n:  # flat: no texture at all
        return None
    return np.array([d_share, th / (th + tv)])


def _soft(feats: np.ndarray, protos: dict[str, np.ndarray]) -> dict[str, float]:
    names = list(protos)
    d2 = np.array([float(((feats - protos[k]) ** 2).sum()) for k in names])
    w = np.exp(-(d2 - d2.min()) / (2 * SOFTNESS**2))
    w /= w.sum()
    return {k: float(p) for k, p in zip(names, w, strict=True) if p > 1e-3}


@lru_cache(maxsize=4096)
def _unknown_direction(word: str, dim: int, n_known: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(f"sieve-synthetic:{word}".encode()).digest()[:8], "little")
    v = np.zeros(dim)
    v[n_known:] = np.random.default_rng(seed).normal(size=dim - n_known)
    v /= np.linalg.norm(v)
    v.setflags(write=False)
    return v
