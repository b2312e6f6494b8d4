"""The neuron grids the report shows: one image per selected neuron, its top probe images with their crop boxes,
one row block per cluster (dropped clusters last, in grey).

Each top image is a cell: the image as the model saw it with its crop box (white inside black, visible on any
colour), below it the neuron's activation map over a grey copy of the image (one colour scale per neuron), and
its rank and pooled activation as text large enough to read in the report.

Drawn from Hypothesize's ``clusters/{neuron}.json`` (ranks, boxes, activations), ``crops.h5`` (the preprocessing
the model saw), the probe's ``activations.h5`` (``topk/maps``: each top image's spatial map, by rank) and the
probe's image set, each probe image loaded once.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..io import atomic_path, read_json

log = logging.getLogger(__name__)

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
]
DROPPED_COLOUR = (120, 120, 120)
# The heat map's colours (matplotlib's "inferno" at 5 stops): dark where the neuron is quiet, yellow where it fires;
# a colour ramp no probe image shares, drawn over a dimmed grey copy of the image.
_HEAT_STOPS = np.array(
    [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)], dtype=np.float32
)
HEAT_LUT = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_HEAT_STOPS)), _HEAT_STOPS[:, c])
        for c in range(3)
    ],
    axis=1,
).astype(np.float32)
_ALPHA = 0.25 + 0.75 * np.linspace(0, 1, 256)
_GREY_WEIGHT = np.round((1 - _ALPHA) * 0.55 / 3 * 65536).astype(
    np.int32
)  # of the channel sum, fixed point 16 bits
_HEAT_TERM = np.round(HEAT_LUT * _ALPHA[:, None]).astype(np.int32)
FONT_PX = 18  # drawn ~950 px wide, shown 600-820 px wide in the report: 12-15 px on screen
# Grids are JPEGs (quality 90): the report re-encodes them as JPEG anyway, and a grid of 20 top images with maps
# (about 0.8 megapixel) takes about 15 times longer as a zlib level-1 PNG and over 100 times with optimize=True
# (bench/bench_cpu_stages.py, bench/results/cpu_stages.json), at 4 times the bytes.
GRID_SUFFIX = ".jpg"
GRID_JPEG_QUALITY = 90


class _ThumbDataset:
    def __init__(self, probe: Any, pre: Any, indices: list[int], tile: int) -> None:
        self.probe, self.pre, self.indices, self.tile = probe, pre, indices, tile

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None]:
        import torch.nn.functional as F

        pi = self.indices[i]
        try:
            x = self.pre.geometric(self.probe.load(pi))
        except Exception:  # noqa: BLE001 - drawn as a grey tile
            return pi, None
        x = F.interpolate(
            x[None], size=(self.tile, self.tile), mode="bilinear", antialias=True, align_corners=False
        )[0]
        return pi, (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def grid_font(size: int = FONT_PX) -> Any:
    """Pillow's bundled scalable font at ``size`` px (no system font needed), else its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def normalized_maps(maps: np.ndarray) -> np.ndarray:
    """One neuron's top-image maps [K, h, w] -> [0, 1], on one scale for the neuron (so the maps compare across
    its top images): value / the neuron's maximum, negatives as 0; a neuron whose maps are all <= 0 (ViT tokens)
    is min-max scaled instead (like :func:`sieve.crops.crop_box`, which does it per map)."""
    m = np.asarray(maps, dtype=np.float32)
    hi = float(m.max()) if m.size else 0.0
    if hi > 0:
        return np.clip(m / hi, 0.0, 1.0)
    lo = float(m.min()) if m.size else 0.0
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear upsampling with ``align_corners=False`` (torch's and the crop boxes'
    convention): output pixel i samples input coordinate (i + 0.5) * n_in / n_out - 0.5, clamped at the edges."""
    pos = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in), dtype=np.float32)
    np.add.at(w, (np.arange(n_out), lo), (1 - (pos - lo)).astype(np.float32))
    np.add.at(w, (np.arange(n_out), hi), (pos - lo).astype(np.float32))
    return w


def heat_tiles(maps: np.ndarray, tile: int) -> np.ndarray:
    """[K, h, w] normalised maps -> [K, tile, tile], upsampled bilinearly (``align_corners=False``: the map covers
    the model's input as the crop boxes assume); two small matrix products, no torch."""
    m = np.asarray(maps, dtype=np.float32)
    wy, wx = _linear_weights(m.shape[1], tile), _linear_weights(m.shape[2], tile)
    return np.clip(wy @ m @ wx.T, 0.0, 1.0)


def overlay(images: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Heat maps over dimmed grey copies of their images ([..., tile, tile, 3] uint8 and [..., tile, tile] in
    [0, 1]): the colour shows where and how strongly the neuron fires, whatever the colours of the image.

    Per pixel, with the map quantised to q in 0..255 and alpha = 0.25 + 0.75 q / 255: grey * 0.55 * (1 - alpha)
    + colour(q) * alpha, in integers through two 256-entry tables (cheap for a whole neuron at once)."""
    q = (heat * 255).astype(np.uint8)
    grey_sum = images.sum(axis=-1, dtype=np.int32)  # 3 x grey
    out = (grey_sum * _GREY_WEIGHT[q]) >> 16
    return (out[..., None] + _HEAT_TERM[q]).clip(0, 255).astype(np.uint8)


def draw_box(draw: Any, box: tuple[float, float, float, float]) -> None:
    """A crop box that stays visible on any colour: white inside a black outline."""
    x0, y0, x1, y1 = box
    draw.rectangle([x0 - 1, y0 - 1, x1 + 1, y1 + 1], outline=(0, 0, 0), width=3)
    draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=1)


def draw_grid(
    doc: dict[str, Any],
    thumbs: dict[int, np.ndarray],
    input_size: int,
    tile: int = 96,
    per_row: int = 8,
    maps: np.ndarray | None = None,
) -> Any:
    """One neuron's top images, one row block per cluster (dropped clusters last, in grey).

    Each top image is a cell: the image with its crop box, below it the neuron's activation map over the image
    (when ``maps``, [K, h, w] by rank, is given), and its rank and pooled activation in text."""
    from PIL import Image, ImageDraw

    font = grid_font()
    line = FONT_PX + 5
    crops = doc["crops"]
    blank = np.full((tile, tile, 3), 160, np.uint8)
    tiles = [thumbs.get(int(c["probe_index"])) for c in crops]
    heat = None
    if maps is not None and len(maps):
        heat = overlay(
            np.stack([blank if t is None else t for t in tiles[: len(maps)]]),
            heat_tiles(normalized_maps(maps[: len(tiles)]), tile),
        )
    groups = [
        (f"cluster {c['cluster']} ({c['size']})", PALETTE[c["cluster"] % len(PALETTE)], c["members"])
        for c in doc["clusters"]
    ]
    groups += [
        (f"dropped {c['cluster']} ({c['size']})", DROPPED_COLOUR, c.get("members", []))
        for c in doc["dropped"]
    ]
    groups = [g for g in groups if g[2]]
    label_w, pad = 150, 4
    cell_h = tile * (2 if heat is not None else 1) + line
    n_lines = sum(math.ceil(len(m) / per_row) for _, _, m in groups) or 1
    widest = max([min(len(m), per_row) for _, _, m in groups] or [1])
    width = max(label_w + widest * (tile + pad) + pad, 260)
    head = line + 8
    height = head + n_lines * (cell_h + pad) + pad
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    title = f"neuron {doc['neuron']}: k = {doc['k']}  (top image, crop boxed; below: activation map; rank, activation)"
    draw.text(
        (pad, 4),
        title if heat is not None else f"neuron {doc['neuron']}: k = {doc['k']}",
        fill=(0, 0, 0),
        font=font,
    )
    y = head
    scale = tile / float(input_size)
    for label, colour, members in groups:
        rows = math.ceil(len(members) / per_row)
        block_h = rows * (cell_h + pad) - pad
        draw.rectangle([pad, y, pad + 4, y + block_h], fill=colour)
        draw.text((pad + 10, y + 4), label, fill=colour, font=font)
        for j, r in enumerate(members):
            x = label_w + (j % per_row) * (tile + pad)
            cy = y + (j // per_row) * (cell_h + pad)
            crop = crops[r]
            arr = tiles[r]
            img.paste(Image.fromarray(arr if arr is not None else blank), (x, cy))
            x0, y0, x1, y1 = (v * scale for v in crop["box"])
            draw_box(draw, (x + x0, cy + y0, x + max(x0, x1 - 1), cy + max(y0, y1 - 1)))
            if heat is not None and r < len(heat):
                img.paste(Image.fromarray(heat[r]), (x, cy + tile))
            value = crop.get("activation")
            text = f"#{r}" + (f" {value:.3g}" if isinstance(value, (int, float)) else "")
            draw.text((x, cy + cell_h - line + 2), text, fill=(0, 0, 0), font=font)
        y += rows * (cell_h + pad)
    return img


def read_top_maps(activations_h5: str, neurons: list[int]) -> dict[int, np.ndarray]:
    """The probe stage's top-K maps (``topk/maps`` [C, K, h, w], by rank: the ranks of the crops) of ``neurons``."""
    if not neurons:
        return {}
    order = sorted(set(neurons))
    with h5py.File(activations_h5, "r") as f:
        maps = f["topk/maps"][order]
    return {n: maps[i] for i, n in enumerate(order)}


def run_grids(
    clusters_dir: str,
    crops_h5: str,
    probe: Any,
    out_dir: str,
    tile: int = 96,
    num_workers: int = 0,
    activations_h5: str | None = None,
) -> int:
    """One ``grids/{neuron}.jpg`` (JPEG, :data:`GRID_JPEG_QUALITY`) per clustered neuron (each probe image loaded once); with ``activations_h5``,
    each top image's activation map is drawn below it."""
    import torch

    from ..backends.models import Preprocess

    with h5py.File(crops_h5, "r") as f:
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
    docs = [read_json(p) for p in sorted(Path(clusters_dir).glob("*.json"))]
    maps = read_top_maps(activations_h5, [int(d["neuron"]) for d in docs]) if activations_h5 else {}
    indices = sorted({int(c["probe_index"]) for d in docs for c in d["crops"]})
    thumbs: dict[int, np.ndarray] = {}
    loader = torch.utils.data.DataLoader(
        _ThumbDataset(probe, pre, indices, tile), batch_size=16, num_workers=num_workers, collate_fn=_as_list
    )
    for batch in loader:
        for pi, arr in batch:
            if arr is None:
                log.warning("grid: probe image %d cannot be read; drawn grey", pi)
            else:
                thumbs[pi] = arr
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for d in docs:
        img = draw_grid(d, thumbs, pre.input_size, tile, maps=maps.get(int(d["neuron"])))
        with atomic_path(os.path.join(out_dir, f"{d['neuron']}{GRID_SUFFIX}"), suffix=GRID_SUFFIX) as tmp:
            img.save(tmp, format="JPEG", quality=GRID_JPEG_QUALITY)
    log.info("drew %d grids", len(docs))
    return len(docs)


def _as_list(batch: list) -> list:
    return batch
