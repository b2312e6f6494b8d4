"""Every PIL mode a probe folder can hold reaches the model as the right 8-bit RGB (issue 15, item 4).

Each image is written to disk in the format Pillow can write that mode to, then read back through the probe
loader (which crops, grids and CLIP-Dissect's image embedding reuse), the model's preprocessing, CLIP's
transform, Verify's image cache and the report's thumbnails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sieve.backends.imagesets import open_image_set
from sieve.backends.models import Preprocess
from sieve.evaluate.clip_dissect import _clip_transform
from sieve.images import open_rgb, to_rgb
from sieve.report import make_thumbnail
from sieve.verify.cache import load_images

COLOUR = (200, 100, 50)
EXT = {
    "PNG": ".png",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "GIF": ".gif",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "PPM": ".ppm",
}
# (mode, format) pairs Pillow 10+ can write and read back; lossy formats get a tolerance
ORDINARY = [
    ("1", "PNG"),
    ("1", "BMP"),
    ("1", "TIFF"),
    ("1", "PPM"),
    ("L", "PNG"),
    ("L", "BMP"),
    ("L", "TIFF"),
    ("L", "PPM"),
    ("L", "JPEG"),
    ("L", "GIF"),
    ("LA", "PNG"),
    ("LA", "TIFF"),
    ("P", "PNG"),
    ("P", "GIF"),
    ("P", "TIFF"),
    ("P", "BMP"),
    ("PA", "TIFF"),
    ("PA", "WEBP"),
    ("RGB", "PNG"),
    ("RGB", "JPEG"),
    ("RGB", "WEBP"),
    ("RGB", "PPM"),
    ("RGBA", "PNG"),
    ("RGBA", "TIFF"),
    ("RGBA", "WEBP"),
    ("RGBX", "TIFF"),
    ("RGBX", "JPEG"),
    ("CMYK", "JPEG"),
    ("CMYK", "TIFF"),
    ("YCbCr", "TIFF"),
    ("YCbCr", "JPEG"),
    ("LAB", "TIFF"),
]
LOSSY = {"JPEG": 8, "WEBP": 3}
# 16-bit grey ramp: 0 .. 65535 over 8 columns, expected round(v / 257)
RAMP16 = np.tile(np.linspace(0, 65535, 8).round().astype(np.uint16), (8, 1))
EXPECT16 = np.rint(RAMP16 / 257.0).astype(np.uint8)
WIDE = [
    ("I;16", "PNG"),
    ("I;16", "TIFF"),
    ("I;16", "PPM"),
    ("I;16B", "PNG"),
    ("I;16B", "TIFF"),
    ("I;16L", "TIFF"),
    ("I", "TIFF"),
    ("I", "PPM"),
]


def _source(mode: str) -> Image.Image:
    """An 8x8 image in ``mode``: the test colour converted (white for bilevel images)."""
    if mode == "1":
        return Image.new("1", (8, 8), 1)
    return Image.new("RGB", (8, 8), COLOUR).convert(mode)


def _wide(mode: str) -> Image.Image:
    if mode == "I":
        return Image.fromarray(RAMP16.astype(np.int32))
    dtype = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2"}[mode]
    return Image.frombytes(mode, (8, 8), RAMP16.astype(dtype).tobytes())


def _probe_load(folder: Path, name: str) -> np.ndarray:
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(folder)})
    img = probe.load(probe.paths.index(name))
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


@pytest.mark.parametrize(("mode", "fmt"), ORDINARY, ids=[f"{m}-{f}" for m, f in ORDINARY])
def test_probe_reads_ordinary_modes(tmp_path: Path, mode: str, fmt: str) -> None:
    src = _source(mode)
    name = f"img{EXT[fmt]}"
    src.save(tmp_path / name, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    expected = np.asarray(src.convert("RGB")).astype(int)
    got = _probe_load(tmp_path, name)
    assert np.abs(got - expected).max() <= LOSSY.get(fmt, 0)


@pytest.mark.parametrize(("mode", "fmt"), WIDE, ids=[f"{m}-{f}" for m, f in WIDE])
def test_probe_scales_16_bit_modes(tmp_path: Path, mode: str, fmt: str) -> None:
    """A 16-bit ramp keeps its grey levels (the old convert("RGB") made every non-zero pixel white)."""
    name = f"ramp{EXT[fmt]}"
    _wide(mode).save(tmp_path / name, fmt)
    got = _probe_load(tmp_path, name)
    assert np.array_equal(got, np.repeat(EXPECT16[:, :, None], 3, axis=2))


def test_probe_scales_float_tiff(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 8, dtype=np.float32), (8, 1))
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    got = _probe_load(tmp_path, "f.tif")
    assert np.array_equal(got[..., 0], np.rint(ramp * 255).astype(int))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([[0.0, 0.5, 1.0]]), [0, 128, 255]),  # [0, 1]: x 255
        (np.array([[0.0, 100.0, 255.0]]), [0, 100, 255]),  # [0, 255]: kept
        (np.array([[-10.0, 0.0, 990.0]]), [0, 3, 255]),  # any other range: stretched
        (np.array([[np.nan, 0.0, 1.0, np.inf]]), [0, 0, 255, 255]),  # non-finite: ends of the finite range
    ],
)
def test_float_ranges(values: np.ndarray, expected: list[int]) -> None:
    got = np.asarray(to_rgb(Image.fromarray(values.astype(np.float32))))[0, :, 0]
    assert got.tolist() == expected


def test_int32_outside_16_bit_is_stretched() -> None:
    img = Image.fromarray(np.array([[-1000, 0, 99000]], dtype=np.int32))
    assert np.asarray(to_rgb(img))[0, :, 1].tolist() == [0, 3, 255]


def test_hsv_in_memory() -> None:
    """HSV cannot be written to a probe file; a custom loader could still return it."""
    assert to_rgb(Image.new("HSV", (1, 1), (0, 255, 255))).getpixel((0, 0)) == (255, 0, 0)


def test_background_composites_alpha() -> None:
    img = Image.new("LA", (2, 1), (10, 0))
    assert to_rgb(img).getpixel((0, 0)) == (10, 10, 10)
    assert to_rgb(img, background=(255, 255, 255)).getpixel((0, 0)) == (255, 255, 255)


def _ramp_png(tmp_path: Path) -> Path:
    path = tmp_path / "ramp.png"
    Image.fromarray(RAMP16).save(path)
    return path


def test_preprocess_and_clip_transform_scale_16_bit() -> None:
    img = Image.fromarray(np.full((16, 16), 30000, np.uint16))
    want = round(30000 / 257) / 255
    x = Preprocess(input_size=8, resize=8).geometric(img)
    assert x.shape == (3, 8, 8) and torch.allclose(x, torch.full_like(x, want), atol=1 / 255)
    y = _clip_transform(8)(img)
    assert torch.allclose(y, torch.full_like(y, want), atol=1 / 255)


def test_verify_cache_reader_scales_16_bit(tmp_path: Path) -> None:
    x = load_images([_ramp_png(tmp_path)])
    assert x.shape == (1, 3, 8, 8)
    assert torch.allclose(x[0, 0] * 255, torch.from_numpy(EXPECT16).float(), atol=0.01)


def test_report_thumbnail_scales_16_bit_and_composites_on_white(tmp_path: Path) -> None:
    src = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16), 30000, np.uint16)).save(src)
    make_thumbnail(src, tmp_path / "t.jpg", 8)
    assert abs(int(np.asarray(open_rgb(tmp_path / "t.jpg")).mean()) - 117) <= 2
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    make_thumbnail(tmp_path / "clear.png", tmp_path / "c.jpg", 8)
    assert np.asarray(open_rgb(tmp_path / "c.jpg")).min() >= 250


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos", "box", "hamming"])
def test_preprocess_geometry_equals_torchvision(interpolation: str) -> None:
    """sieve.images' resize / centre crop / to-tensor (no torchvision import, issue 14) give torchvision's
    tensors exactly: portrait, landscape, square, already at size, smaller than the crop (padded, odd pads)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(0)
    cases = [(75, 9, 36, 20), (40, 61, 32, 28), (30, 30, 30, 30), (17, 23, 12, 15), (8, 5, 5, 9)]
    for w, h, size, crop in cases:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        want = TF.to_tensor(
            TF.center_crop(TF.resize(img, size, interpolation=InterpolationMode(interpolation)), [crop, crop])
        )
        got = Preprocess(input_size=crop, resize=size, interpolation=interpolation).geometric(img)
        assert got.dtype == want.dtype and got.shape == want.shape, (w, h, size, crop)
        assert torch.equal(got, want), (w, h, size, crop)
    want = TF.to_tensor(TF.center_crop(TF.resize(img, 7, interpolation=InterpolationMode.BICUBIC), [7, 7]))
    assert torch.equal(_clip_transform(7)(img), want)


def test_preprocess_names_an_unknown_interpolation() -> None:
    with pytest.raises(ValueError, match="interpolation 'cubic' is not one of nearest"):
        Preprocess(interpolation="cubic").geometric(Image.new("RGB", (4, 4)))
