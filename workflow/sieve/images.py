"""The one way sieve reads an image: any PIL mode in, 8-bit RGB out, with high bit depths scaled, not clipped.

Pillow's own ``img.convert("RGB")`` clips the 16-bit and 32-bit modes to 255, so a 16-bit grey PNG (mode
``I;16``) reaches the model almost white. :func:`to_rgb` scales them instead:

- ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit): ``round(v / 257)``, so 0 -> 0 and 65535 -> 255;
- ``I`` (32-bit integer; how Pillow opens a 16-bit PGM): values within [0, 65535] are taken as 16-bit and
  scaled like ``I;16``; any other range is stretched linearly, minimum -> 0 and maximum -> 255;
- ``F`` (32-bit float): values within [0, 1] are multiplied by 255, values within [0, 255] are kept, any other
  range is stretched like ``I``; NaN takes the minimum, +-inf the ends of the finite range.

Every other mode (``1``, ``L``, ``LA``, ``P``, ``PA``, ``RGBA``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``,
``HSV``) goes through Pillow's conversion, which is exact for them. Transparency is dropped (the colour under
it is kept, as torchvision's loaders do) unless a ``background`` colour is given to composite onto (the
report's thumbnails use white).

:func:`resize_short`, :func:`center_crop` and :func:`to_chw` are torchvision's ``transforms.functional``
``resize`` (an int size), ``center_crop`` and ``to_tensor`` on an RGB PIL image, the same pixels and the same
float32 values, in Pillow and numpy: importing torchvision takes seconds, a large share of a small job
(issue 14); ``tests/test_image_modes.py`` compares them with torchvision's.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from PIL import Image

WIDE_INT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
U16_MAX = 65535


def _to_8bit(a: np.ndarray, mode: str) -> np.ndarray:
    """A single-channel array of a wide mode -> uint8, scaled by the rules of the module docstring."""
    a = a.astype(np.float64)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        out = a * 255.0
    elif mode == "F" and lo >= 0.0 and hi <= 255.0:
        out = a
    elif mode != "F" and (mode.startswith("I;16") or (lo >= 0 and hi <= U16_MAX)):
        out = a * (255.0 / U16_MAX)
    else:  # stretch the range onto [0, 255] (a constant image becomes 0)
        out = (a - lo) * (255.0 / ((hi - lo) or 1.0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def has_alpha(img: Image.Image) -> bool:
    """True for modes with an alpha band and for palette images with a transparent colour."""
    return "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info)


def to_rgb(img: Image.Image, background: tuple[int, int, int] | None = None) -> Image.Image:
    """``img`` as an 8-bit RGB image; see the module docstring for how each mode is converted."""
    if img.mode in WIDE_INT_MODES or img.mode == "F":
        return Image.fromarray(_to_8bit(np.asarray(img), img.mode)).convert("RGB")
    if background is not None and has_alpha(img):
        rgba = img.convert("RGBA")
        out = Image.new("RGB", img.size, background)
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return img.convert("RGB")  # a copy even for RGB: the caller may close ``img``


def open_rgb(path: str | os.PathLike[str], background: tuple[int, int, int] | None = None) -> Image.Image:
    """Open, decode and convert the image at ``path`` (the first frame of an animation).

    Raises what Pillow raises for an unreadable file (``OSError``, ``UnidentifiedImageError``, ``ValueError``,
    ``DecompressionBombError``): callers decide whether that skips the image or stops the stage."""
    with Image.open(path) as img:
        img.load()
        return to_rgb(img, background)


def open_rgb_reduced(
    path: str | os.PathLike[str], request: Callable[[int, int], tuple[int, int]]
) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`open_rgb`, but a JPEG is decoded at 1/2, 1/4 or 1/8 of its size (Pillow's ``draft``: the DCT
    scaled while decoding, several times faster) when ``request(width, height)`` asks for no more; other formats
    decode in full. Returns the image and the file's full (width, height)."""
    with Image.open(path) as img:
        full = img.size
        if img.format == "JPEG":
            want = request(*full)
            if want[0] < full[0] and want[1] < full[1]:
                img.draft(None, want)
        img.load()
        return to_rgb(img), full


# torchvision's InterpolationMode values -> Pillow's resampling filters (torchvision's ``pil_modes_mapping``)
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


def resize_short(img: Image.Image, size: int, interpolation: str = "bilinear") -> Image.Image:
    """The short side to ``size``, the long side to ``int(size * long / short)`` (an image already that size is
    returned as is), with the named filter (antialiased, as Pillow always is)."""
    if interpolation not in RESAMPLE:
        raise ValueError(f"interpolation {interpolation!r} is not one of {', '.join(RESAMPLE)}")
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = int(size), int(int(size) * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), RESAMPLE[interpolation])


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The centred ``size`` x ``size`` square (offsets rounded half to even); a smaller image is first padded
    with black, one pixel more on the right and bottom where the padding is odd."""
    w, h = img.size
    left = top = 0
    if size > w or size > h:
        pad_left = (size - w) // 2 if size > w else 0
        pad_top = (size - h) // 2 if size > h else 0
        padded = Image.new(img.mode, (max(w, size), max(h, size)))
        padded.paste(img, (pad_left, pad_top))
        img, (w, h) = padded, padded.size
        if (w, h) == (size, size):
            return img
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def to_chw(img: Image.Image) -> np.ndarray:
    """An 8-bit RGB or grey image -> float32 [C, H, W] in [0, 1] (value / 255)."""
    if img.mode not in ("RGB", "L"):
        raise ValueError(f"to_chw takes an 8-bit RGB or L image, got mode {img.mode!r} (use to_rgb first)")
    a = np.array(img, dtype=np.uint8, copy=True).reshape(img.size[1], img.size[0], -1)
    return np.ascontiguousarray(a.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)
