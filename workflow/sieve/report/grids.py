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

import functools
import io
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..backends.preprocess import Preprocess
from ..io import read_json, write_bytes_atomic

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
_BLACK, _WHITE = (
    np.array([0, 0, 0, 255], np.uint8).view(np.uint32)[0],
    np.array([255, 255, 255, 255], np.uint8).view(np.uint32)[0],
)
# A cell's image and map are GRID_TILE px square: a grid of 8 columns is about 830 px wide, which is how wide the
# report shows it at most (report.css: 820 px; 96 px tiles made 954 px grids that the page shrank to ~82 px tiles),
# and it takes about 0.7 of the pixels to draw and encode.
GRID_TILE = 80
FONT_PX = 16  # drawn ~830 px wide, shown 600-820 px wide in the report: 12-16 px on screen
# Grids are JPEGs (quality 90): the report re-encodes them as JPEG anyway, and a grid of 20 top images with maps
# takes many times longer as a zlib level-1 PNG and over 100 times with optimize=True, at several times the bytes
# (bench/bench_cpu_stages.py, bench/results/cpu_stages.json).
GRID_SUFFIX = ".jpg"
GRID_JPEG_QUALITY = 90


@functools.lru_cache(maxsize=4)
def grid_font(size: int = FONT_PX) -> Any:
    """Pillow's bundled scalable font at ``size`` px (no system font needed), else its small bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def rgbx(colour: tuple[int, int, int]) -> np.uint32:
    """An RGB colour as one pixel of the grids' canvas (4 bytes R, G, B, 255 in memory order)."""
    return np.array([*colour, 255], np.uint8).view(np.uint32)[0]


@functools.lru_cache(maxsize=4)
def _line_height(size: int) -> int:
    font = grid_font(size)
    if hasattr(font, "getmetrics"):
        ascent, descent = font.getmetrics()
        return int(ascent + descent)
    return int(font.getbbox("Ag#0(|_")[3]) + 1


_ONE3 = np.array([1, 1, 1, 0], np.uint8).view(np.uint32)[
    0
]  # inv * _ONE3 | _OPAQUE: the pixel (inv, inv, inv)
_OPAQUE = np.array([0, 0, 0, 255], np.uint8).view(np.uint32)[0]


def _inverse_pixels(cov: np.ndarray) -> np.ndarray:
    """Coverage [h, w] -> canvas bytes [h, w, 4] of black ink: 255 - coverage in R, G, B, opaque."""
    inv = (255 - cov).astype(np.uint32)
    inv *= _ONE3
    inv |= _OPAQUE
    return inv.view(np.uint8).reshape(*cov.shape, 4)


@functools.lru_cache(maxsize=512)
def _glyph(ch: str, size: int) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """One character as Pillow draws it: its coverage [line height, width] (uint8) with the pen at column 1 (a
    glyph may ink one column left of the pen), the same as black ink (:func:`_inverse_pixels`), its advance in
    whole px, and whether any ink lies outside the columns from the pen to the pen plus the advance. Rendered by
    Pillow once per process."""
    from PIL import Image, ImageDraw

    font = grid_font(size)
    adv = int(round(font.getlength(ch)))
    width = 1 + max(adv, int(math.ceil(font.getbbox(ch)[2]))) + 2
    img = Image.new("L", (width, _line_height(size)), 0)
    ImageDraw.Draw(img).text((1, 0), ch, fill=255, font=font)
    cov = np.asarray(img)
    return cov, _inverse_pixels(cov), adv, bool(cov[:, 0].any() or cov[:, 1 + adv :].any())


def _compose(text: str, size: int, ink: bool) -> np.ndarray:
    """``text`` from its glyphs, the pen starting at column 0: each glyph's columns up to its advance, joined (one
    concatenation), then the few glyphs that ink beyond their advance laid over (maximum of coverage, minimum of
    ink). Pillow's layout without kerning (which its basic layout of the bundled font does not apply)."""
    k = 1 if ink else 0
    glyphs = [_glyph(ch, size) for ch in text] or [_glyph(" ", size)]
    out = np.concatenate([g[k][:, 1 : 1 + g[2]] for g in glyphs[:-1]] + [glyphs[-1][k][:, 1:]], axis=1)
    pen = 0
    for g in glyphs:
        if g[3]:
            lo, hi = max(pen - 1, 0), min(pen - 1 + g[0].shape[1], out.shape[1])
            (np.minimum if ink else np.maximum)(
                out[:, lo:hi], g[k][:, lo - pen + 1 : hi - pen + 1], out=out[:, lo:hi]
            )
        pen += g[2]
    out.flags.writeable = False
    return out


def clear_text_cache() -> None:
    """Forget the composed texts (not the glyphs): a grid drawn next composes its labels as in a fresh job."""
    text_mask.cache_clear()
    _ink.cache_clear()


@functools.lru_cache(maxsize=4096)
def text_mask(text: str, size: int = FONT_PX) -> np.ndarray:
    """``text``'s coverage [line height, width] (uint8, 255 = ink) in :func:`grid_font` (see :func:`_compose`)."""
    return _compose(text, size, ink=False)


@functools.lru_cache(maxsize=4096)
def _ink(text: str, colour: tuple[int, int, int], size: int = FONT_PX) -> tuple[np.ndarray, int]:
    """``text`` in ``colour`` as canvas bytes [line height, width, 4] over white (255 - coverage x (255 -
    colour) / 255 per channel), and the pen's advance over it."""
    if colour == (0, 0, 0):
        out = _compose(text, size, ink=True)
    else:
        cov = text_mask(text, size).astype(np.uint16)[:, :, None]
        out = np.empty((*cov.shape[:2], 4), np.uint8)
        out[..., :3] = 255 - (cov * (255 - np.asarray(colour, np.uint16)) + 127) // 255
        out[..., 3] = 255
        out.flags.writeable = False
    return out, text_width(text, size)


def text_width(text: str, size: int = FONT_PX) -> int:
    """How far the pen moves over ``text`` (the sum of its glyphs' advances), in px."""
    return sum(_glyph(ch, size)[2] for ch in text)


def put_text(canvas: np.ndarray, xy: tuple[int, int], text: str, colour: tuple[int, int, int]) -> int:
    """Draw ``text`` in ``colour`` into ``canvas`` ([H, W] RGBX, see :func:`rgbx`; in place) with its line's top
    left at ``xy``, clipped to the canvas, as the darker of its ink (:func:`_ink`) and the canvas, per channel:
    the coverage blend itself on the white ground where the grids write. Returns the pen's x after the text."""
    x, y = xy
    ink, advance = _ink(text, tuple(colour))
    h, w = min(ink.shape[0], canvas.shape[0] - y), min(ink.shape[1], canvas.shape[1] - x)
    if h > 0 and w > 0 and x >= 0 and y >= 0:
        region = canvas[y : y + h, x : x + w].view(np.uint8).reshape(h, w, 4)
        np.minimum(region, ink[:h, :w], out=region)
    return x + advance


def fill_rect(canvas: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: tuple[int, int, int]) -> None:
    """Fill the rectangle with corners (x0, y0) and (x1, y1), both included (as Pillow's ``rectangle``), clipped
    to the canvas ([H, W] RGBX)."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x0 <= x1 and y0 <= y1:
        canvas[y0 : y1 + 1, x0 : x1 + 1] = rgbx(colour)


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


@functools.lru_cache(maxsize=64)
def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear upsampling with ``align_corners=False`` (torch's and the crop boxes'
    convention): output pixel i samples input coordinate (i + 0.5) * n_in / n_out - 0.5, clamped at the edges."""
    pos = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.zeros((n_out, n_in), dtype=np.float32)
    np.add.at(w, (np.arange(n_out), lo), (1 - (pos - lo)).astype(np.float32))
    np.add.at(w, (np.arange(n_out), hi), (pos - lo).astype(np.float32))
    w.flags.writeable = False
    return w


def heat_tiles(maps: np.ndarray, tile: int) -> np.ndarray:
    """[K, h, w] normalised maps -> [K, tile, tile], upsampled bilinearly (``align_corners=False``: the map covers
    the model's input as the crop boxes assume); two small matrix products, no torch."""
    m = np.asarray(maps, dtype=np.float32)
    wy, wx = _linear_weights(m.shape[1], tile), _linear_weights(m.shape[2], tile)
    return np.clip(wy @ m @ wx.T, 0.0, 1.0)


def _overlay_table() -> np.ndarray:
    """[256 * 256] canvas pixels (:func:`rgbx`), index ``grey << 8 | q``: the overlay's colour for each grey
    level and map level q, so :func:`overlay` is one table lookup per pixel."""
    grey_sum = (
        3 * np.arange(256, dtype=np.int32)[:, None, None]
    )  # 3 x grey: the old per-channel formula's input
    rgb = ((grey_sum * _GREY_WEIGHT[None, :, None]) >> 16) + _HEAT_TERM[None]  # [256, 256, 3]
    out = np.full((256 * 256, 4), 255, np.uint8)
    out[:, :3] = rgb.clip(0, 255).reshape(-1, 3)
    return out.view(np.uint32)[:, 0]


_OVERLAY = _overlay_table()


def overlay(images: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Heat maps over dimmed grey copies of their images ([K, tile, tile, 3 or 4] uint8, RGB or RGBX, and
    [K, tile, tile] in [0, 1]): the colour shows where and how strongly the neuron fires, whatever the colours
    of the image. Returns [K, tile, tile] canvas pixels (uint32, :func:`rgbx`).

    Per pixel, with the map quantised to q in 0..255 and alpha = 0.25 + 0.75 q / 255: grey * 0.55 * (1 - alpha)
    + colour(q) * alpha, grey being Pillow's luma (``convert("L")``), through one lookup of (grey, q) in a table
    of all 65,536 pairs (cheap for a whole neuron at once)."""
    from PIL import Image

    k, t = images.shape[:2]
    mode = "RGBX" if images.shape[-1] == 4 else "RGB"
    flat = np.ascontiguousarray(images).reshape(k * t, images.shape[2], images.shape[3])
    grey = np.asarray(Image.frombuffer(mode, (flat.shape[1], k * t), flat, "raw", mode, 0, 1).convert("L"))
    idx = grey.astype(np.uint16).reshape(images.shape[:3])
    idx <<= 8
    idx |= (heat * 255).astype(np.uint16)
    return _OVERLAY.take(idx)


def outline_rect(
    canvas: np.ndarray, box: tuple[int, int, int, int], pixel: np.uint32, width: int = 1
) -> None:
    """A rectangle's outline ``width`` px thick inside the corners (x0, y0), (x1, y1), both included (as Pillow's
    ``rectangle(..., outline=, width=)``), as four slices of the canvas ([H, W] RGBX), clipped to it."""
    x0, y0, x1, y1 = box
    h, w = canvas.shape[:2]
    xa, xb, ya, yb = max(x0, 0), min(x1 + 1, w), max(y0, 0), min(y1 + 1, h)
    if xa >= xb or ya >= yb:
        return
    canvas[ya : max(ya, min(y0 + width, yb)), xa:xb] = pixel
    canvas[min(yb, max(y1 + 1 - width, ya)) : yb, xa:xb] = pixel
    canvas[ya:yb, xa : max(xa, min(x0 + width, xb))] = pixel
    canvas[ya:yb, min(xb, max(x1 + 1 - width, xa)) : xb] = pixel


def draw_box(canvas: np.ndarray, box: tuple[float, float, float, float]) -> None:
    """A crop box that stays visible on any colour: a white line (corners ``box``, included, in canvas pixels)
    between two black ones, clipped to the canvas ([H, W] RGBX)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    outline_rect(canvas, (x0 - 1, y0 - 1, x1 + 1, y1 + 1), _BLACK, width=3)
    outline_rect(canvas, (x0, y0, x1, y1), _WHITE, width=1)


def as_tile(arr: np.ndarray | None, tile: int) -> np.ndarray:
    """A thumbnail ([tile, tile, 3] RGB or [tile, tile, 4] RGBX uint8, or None: grey) as canvas pixels
    [tile, tile] (uint32, :func:`rgbx`)."""
    if arr is None:
        return np.full((tile, tile), rgbx((160, 160, 160)), np.uint32)
    if arr.shape[-1] == 3:
        rgba = np.full((*arr.shape[:2], 4), 255, np.uint8)
        rgba[..., :3] = arr
        arr = rgba
    return np.ascontiguousarray(arr).view(np.uint32)[..., 0]


def draw_grid(
    doc: dict[str, Any],
    thumbs: dict[int, np.ndarray],
    input_size: int,
    tile: int = GRID_TILE,
    per_row: int = 8,
    maps: np.ndarray | None = None,
) -> Any:
    """One neuron's top images, one row block per cluster (dropped clusters last, in grey), as a Pillow image
    (mode ``RGBX``, over the drawn array without a copy; :func:`encode_grid` writes it).

    Each top image is a cell: the image with its crop box, below it the neuron's activation map over the image
    (when ``maps``, [K, h, w] by rank, is given), and its rank and pooled activation in text. ``thumbs``: probe
    index -> [tile, tile, 4] RGBX (what :func:`load_thumbnails` gives) or [tile, tile, 3] RGB uint8. Drawn into one
    preallocated array of 4-byte pixels by slicing (all the maps in one vectorised :func:`overlay`, each glyph
    rendered once per process): no Pillow drawing and no per-tile image."""
    from PIL import Image

    line = FONT_PX + 5
    crops = doc["crops"]
    cache: dict[int, np.ndarray] = {}
    tiles = []
    for c in crops:
        pi = int(c["probe_index"])
        if pi not in cache:
            cache[pi] = as_tile(thumbs.get(pi), tile)
        tiles.append(cache[pi])
    heat = None
    if maps is not None and len(maps) and tiles:
        n = min(len(maps), len(tiles))
        heat = overlay(
            np.stack(tiles[:n]).view(np.uint8).reshape(n, tile, tile, 4),
            heat_tiles(normalized_maps(maps[:n]), tile),
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
    img = np.full((height, width), _WHITE, np.uint32)
    end = put_text(img, (pad, 4), f"neuron {doc['neuron']}: k = {doc['k']}", (0, 0, 0))
    if heat is not None:
        put_text(
            img, (end, 4), "  (top image, crop boxed; below: activation map; rank, activation)", (0, 0, 0)
        )
    y = head
    scale = tile / float(input_size)
    for label, colour, members in groups:
        rows = math.ceil(len(members) / per_row)
        block_h = rows * (cell_h + pad) - pad
        fill_rect(img, pad, y, pad + 4, y + block_h, colour)
        put_text(img, (pad + 10, y + 4), label, colour)
        for j, r in enumerate(members):
            x = label_w + (j % per_row) * (tile + pad)
            cy = y + (j // per_row) * (cell_h + pad)
            crop = crops[r]
            img[cy : cy + tile, x : x + tile] = tiles[r]
            x0, y0, x1, y1 = (v * scale for v in crop["box"])
            draw_box(img, (x + x0, cy + y0, x + max(x0, x1 - 1), cy + max(y0, y1 - 1)))
            if heat is not None and r < len(heat):
                img[cy + tile : cy + 2 * tile, x : x + tile] = heat[r]
            value = crop.get("activation")
            text = f"#{r}" + (f" {value:.3g}" if isinstance(value, (int, float)) else "")
            put_text(img, (x, cy + cell_h - line + 2), text, (0, 0, 0))
        y += rows * (cell_h + pad)
    return Image.frombuffer("RGBX", (width, height), img, "raw", "RGBX", 0, 1)


def encode_grid(grid: Any, path: Any) -> None:
    """Write a grid (:func:`draw_grid`'s image) to ``path`` (a file name or a binary file) as JPEG, quality
    :data:`GRID_JPEG_QUALITY`."""
    grid.save(path, format="JPEG", quality=GRID_JPEG_QUALITY)


def read_top_maps(activations_h5: str, neurons: list[int]) -> dict[int, np.ndarray]:
    """The probe stage's top-K maps (``topk/maps`` [C, K, h, w], by rank: the ranks of the crops) of ``neurons``."""
    if not neurons:
        return {}
    order = sorted(set(neurons))
    with h5py.File(activations_h5, "r") as f:
        maps = f["topk/maps"][order]
    return {n: maps[i] for i, n in enumerate(order)}


def thumbnail(probe: Any, pre: Preprocess, index: int, tile: int, reduced: bool = True) -> np.ndarray | None:
    """Probe image ``index`` as the model saw it, ``tile`` x ``tile`` (:meth:`Preprocess.view` with ``size``: one
    resample of the view's square of the source), as [tile, tile, 4] RGBX uint8 (the grids' pixels); None when
    the image cannot be read. ``reduced``: a JPEG file is decoded at the smallest DCT scale that still gives
    the square twice the tile's pixels (:meth:`Preprocess.draft_size`), several times faster than in full."""
    try:
        if reduced:
            img, full = probe.load_reduced(index, lambda w, h: pre.draft_size(w, h, tile))
            return np.asarray(pre.view(img, size=tile, source_size=full).convert("RGBX"))
        return np.asarray(pre.view(probe.load(index), size=tile).convert("RGBX"))
    except Exception:  # noqa: BLE001 - drawn as a grey tile
        return None


def map_threads(fn: Callable[[Any], Any], items: Sequence[Any], workers: int) -> list[Any]:
    """``[fn(x) for x in items]``, on ``workers`` threads (0: in this thread); the first error is raised and the
    calls still queued are cancelled."""
    if workers <= 0:
        return [fn(x) for x in items]
    pool = ThreadPoolExecutor(workers)
    try:
        out = list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(cancel_futures=True)
        raise
    pool.shutdown()
    return out


def load_thumbnails(
    probe: Any, pre: Preprocess, indices: list[int], tile: int, workers: int = 0, reduced: bool = True
) -> dict[int, np.ndarray]:
    """:func:`thumbnail` of each probe image in ``indices``, decoded by ``workers`` threads (Pillow releases the
    GIL while it decodes and resizes; 0: in this thread); unreadable images are logged and left out."""

    def one(i: int) -> np.ndarray | None:
        return thumbnail(probe, pre, i, tile, reduced)

    arrays = map_threads(one, indices, workers)
    thumbs: dict[int, np.ndarray] = {}
    for pi, arr in zip(indices, arrays, strict=True):
        if arr is None:
            log.warning("grid: probe image %d cannot be read; drawn grey", pi)
        else:
            thumbs[pi] = arr
    return thumbs


def run_grids(
    clusters_dir: str,
    crops_h5: str,
    probe: Any,
    out_dir: str,
    tile: int = GRID_TILE,
    num_workers: int = 0,
    activations_h5: str | None = None,
    reduced: bool = True,
) -> int:
    """One ``grids/{neuron}.jpg`` (JPEG, :data:`GRID_JPEG_QUALITY`) per clustered neuron (each probe image loaded
    once); with ``activations_h5``, each top image's activation map is drawn below it. ``num_workers`` threads
    load the probe images, then draw, encode and write the grids (Pillow and numpy's large operations release
    the GIL; 0: all in this thread); the files do not depend on it. Imports no torch. ``reduced``: JPEG probe
    images decoded at a reduced scale (:func:`thumbnail`)."""
    with h5py.File(crops_h5, "r") as f:
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
    docs = [read_json(p) for p in sorted(Path(clusters_dir).glob("*.json"))]
    maps = read_top_maps(activations_h5, [int(d["neuron"]) for d in docs]) if activations_h5 else {}
    indices = sorted({int(c["probe_index"]) for d in docs for c in d["crops"]})
    thumbs = load_thumbnails(probe, pre, indices, tile, num_workers, reduced)
    Path(out_dir).mkdir(parents=True, exist_ok=True)

    def write(d: dict[str, Any]) -> None:
        grid = draw_grid(d, thumbs, pre.input_size, tile, maps=maps.get(int(d["neuron"])))
        buf = io.BytesIO()
        encode_grid(grid, buf)
        write_bytes_atomic(os.path.join(out_dir, f"{d['neuron']}{GRID_SUFFIX}"), buf.getvalue())

    map_threads(write, docs, num_workers)
    log.info("drew %d grids", len(docs))
    return len(docs)
