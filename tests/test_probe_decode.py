"""The probe's device decode path (``probe.decode: device``) against the host path, on the CPU.

``decode_jpeg(..., device="cpu")`` runs the device path's code (batched decode in the main process, resize,
crop and normalisation as tensor ops) with libjpeg-turbo instead of nvjpeg. Both paths decode the same pixels
(both use libjpeg-turbo); the resize differs by Pillow's and torch's rounding only: at most one 8-bit level
per pixel, measured below, so activations agree to a small fraction of their scale."""

from __future__ import annotations

import io
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from helpers import REPO
from sieve.activations import read_activations
from sieve.backends import preprocess
from sieve.backends.imagesets import ImageSet, open_image_set
from sieve.backends.models import Preprocess, load_model
from sieve.backends.preprocess import resize_like_pillow
from sieve.probe import TooManyBadImages, device_decodable, resolve_decode, run_probe

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
SIZES = [(60, 45), (45, 60), (80, 60), (37, 37), (50, 41), (64, 48), (48, 64), (90, 70), (40, 52), (55, 55)]


def smooth(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A smooth random picture (decodes like a photograph, not like noise)."""
    return Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


# A frame header and an end marker with nothing between: device_decodable takes it, decode_jpeg rejects it, and
# the host path must then name the file.
HOLLOW_JPEG = b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xff\xd9"


def write_folder(root, n_bad: int = 2):
    """10 JPEGs of ImageNet-like aspect ratios (one grey, one progressive), one PNG, and ``n_bad`` bad files:
    a truncated JPEG (host path from the start) and a hollow one (fails decode_jpeg in the device path)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i, size in enumerate(SIZES):
        img = smooth(rng, size)
        img = img.convert("L") if i == 3 else img
        (root / f"{i:02d}.jpg").write_bytes(jpeg_bytes(img, progressive=i == 5))
    smooth(rng, (58, 44)).save(root / "10.png")
    bad = [("11_truncated.jpg", jpeg_bytes(smooth(rng, (60, 45)))[:300]), ("12_hollow.jpg", HOLLOW_JPEG)]
    for name, data in bad[:n_bad]:
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinymodels", __import__("tinymodels"))
    return load_model("tiny", {"source": "python", "factory": "tinymodels:hotspot_cnn_resized"})


def test_jpegs_the_device_path_takes() -> None:
    rng = np.random.default_rng(1)
    img = smooth(rng, (40, 30))
    assert device_decodable(jpeg_bytes(img)) and device_decodable(jpeg_bytes(img.convert("L")))
    assert device_decodable(jpeg_bytes(img, progressive=True)) and device_decodable(HOLLOW_JPEG)
    assert device_decodable(jpeg_bytes(img) + b"\0\0")  # zero padding after the end marker
    assert not device_decodable(jpeg_bytes(img.convert("CMYK")))  # 4 channels: Pillow's conversion, host
    assert not device_decodable(jpeg_bytes(img)[:200])  # truncated: no end marker
    png = io.BytesIO()
    img.save(png, format="PNG")
    assert not device_decodable(png.getvalue()) and not device_decodable(b"")


@pytest.mark.parametrize(("interpolation", "levels"), [("bilinear", 1), ("bicubic", 2)])
def test_tensor_geometry_is_pillows_within_a_level_or_two(interpolation: str, levels: int) -> None:
    """The same decoded pixels (libjpeg-turbo both), the same resized size and crop offsets as
    Preprocess.geometric, and resized pixels within ``levels`` 8-bit levels of Pillow's, with the CPU's uint8
    kernel and with the float kernel a GPU runs (rounded to 8 bits): measured, bilinear differs by one level
    at most, bicubic's uint8 kernel by two."""
    rng = np.random.default_rng(2)
    pre = Preprocess(input_size=32, resize=37, interpolation=interpolation)
    for size in [*SIZES, (37, 200), (20, 20), (333, 41)]:  # plus thin images and an upsampled one
        data = jpeg_bytes(smooth(rng, size))
        pil = Image.open(io.BytesIO(data))
        decoded = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        assert torch.equal(decoded, torch.from_numpy(np.array(pil.convert("RGB"))).permute(2, 0, 1))
        resized = TF.resize(pil, pre.resize, interpolation=InterpolationMode(interpolation))
        assert pre.resized_size(*decoded.shape[-2:]) == (resized.height, resized.width)
        host = pre.geometric(pil)
        pillow = torch.from_numpy(np.asarray(resized, dtype=np.int64)).permute(2, 0, 1)
        for uint8_kernel in (True, False):
            pixels = resize_like_pillow(
                decoded, pre.resized_size(*decoded.shape[-2:]), interpolation, uint8_kernel
            )
            assert pixels.dtype == torch.uint8 and pixels.shape == pillow.shape
            assert (pixels.long() - pillow).abs().max() <= levels, (size, uint8_kernel)
        dev = pre.geometric_tensor(decoded)
        assert dev.shape == host.shape == (3, 32, 32)
        diff = (dev - host).abs() * 255
        assert diff.max() <= levels + 1e-4 and diff.mean() < 0.25, (size, diff.max(), diff.mean())
    # batched (one size) is per image
    pair = torch.stack([decoded, decoded.flip(-1)])
    torch.testing.assert_close(pre.geometric_tensor(pair)[1], pre.geometric_tensor(decoded.flip(-1)))


def probe_both(tiny, images, tmp_path, **kw):
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(images)})
    out = {}
    for decode, workers in (("host", 0), ("device", 1)):
        path = tmp_path / f"{decode}.h5"
        res = run_probe(
            tiny,
            probe,
            str(path),
            top_n=3,
            batch_size=7,
            num_workers=workers,
            progress=False,
            decode=decode,
            **kw,
        )
        out[decode] = (res, path)
    return out


@pytest.mark.parametrize("kernel", ["uint8", "float"])
def test_device_decode_agrees_with_host_decode(tiny, tmp_path, monkeypatch, kernel: str) -> None:
    """The device path against the host path, with the CPU's uint8 resize and with the float resize a GPU runs."""
    if kernel == "float":
        resize = preprocess.resize_like_pillow
        monkeypatch.setattr(preprocess, "resize_like_pillow", lambda *a: resize(*a, uint8_kernel=False))
    runs = probe_both(tiny, write_folder(tmp_path / "imgs"), tmp_path, max_bad_share=0.2)
    (h_res, h_path), (d_res, d_path) = runs["host"], runs["device"]
    # bad files: the same two skipped, with the same messages naming them
    assert h_res == d_res and h_res["n_images"] == 11 and h_res["n_skipped"] == 2
    assert "11_truncated.jpg" in h_res["skipped"][0] and "12_hollow.jpg" in h_res["skipped"][1]
    host, dev = read_activations(str(h_path)), read_activations(str(d_path))
    assert host["images"] == dev["images"] and len(host["images"]) == 11 and "10.png" in host["images"]
    # At most one 8-bit level of input difference (0.017 after the normalisation's std of 0.225): the pooled
    # activations move by 0.03% of their largest value with the uint8 resize (nearly Pillow's), 0.15% with the
    # float one (at most one level, about 0.2 levels on average); the bound is 0.5%.
    scale = np.abs(host["activations"]).max()
    diff = np.abs(host["activations"] - dev["activations"])
    assert scale > 0.1 and 0 < diff.max() < 0.005 * scale, (diff.max(), scale)
    # the PNG took the host path in both runs: its row is the same to float rounding
    png = host["images"].index("10.png")
    np.testing.assert_allclose(host["activations"][png], dev["activations"][png], rtol=1e-5, atol=1e-6)
    # top images: the same sets for nearly every neuron (near-ties may swap at the edge of the top 3)
    same = [set(a) == set(b) for a, b in zip(host["topk_index"], dev["topk_index"], strict=True)]
    assert np.mean(same) >= 0.8, same
    assert "decode" not in host["attrs"] and dev["attrs"]["decode"] == "device"


def test_too_many_bad_images_is_the_same_error_either_way(tiny, tmp_path) -> None:
    images = write_folder(tmp_path / "imgs")
    messages = []
    for decode in ("host", "device"):
        with pytest.raises(TooManyBadImages) as err:
            run_probe(
                tiny,
                open_image_set("p", {"kind": "imagefolder", "path": str(images)}),
                str(tmp_path / f"{decode}.h5"),
                batch_size=16,
                max_bad_share=0.1,
                progress=False,
                decode=decode,
            )
        messages.append(str(err.value))
        assert not (tmp_path / f"{decode}.h5").exists()
    assert messages[0] == messages[1]
    assert "2 of 13 images are unreadable" in messages[0] and "12_hollow.jpg" in messages[0]


def test_auto_is_host_on_the_cpu_and_device_on_a_gpu(tiny, tmp_path) -> None:
    assert resolve_decode("auto", torch.device("cpu")) == "host"
    assert resolve_decode("auto", torch.device("cuda")) == "device"
    assert resolve_decode("device", torch.device("cpu")) == "device"
    images = write_folder(tmp_path / "imgs", n_bad=0)
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(images)})
    for decode in ("auto", "host"):
        run_probe(
            tiny, probe, str(tmp_path / f"{decode}.h5"), top_n=3, batch_size=4, progress=False, decode=decode
        )
    with h5py.File(tmp_path / "auto.h5") as fa, h5py.File(tmp_path / "host.h5") as fh:
        assert dict(fa.attrs) == dict(fh.attrs) and "decode" not in fa.attrs
        for key in ("activations", "topk/index", "topk/value", "topk/maps"):
            np.testing.assert_array_equal(fa[key][()], fh[key][()])


def test_bad_decode_value_is_an_error_naming_the_key(tiny, tmp_path) -> None:
    probe = open_image_set(
        "p", {"kind": "imagefolder", "path": str(write_folder(tmp_path / "imgs", n_bad=0))}
    )
    with pytest.raises(ValueError, match="probe.decode must be one of host, device, auto, got 'gpu'"):
        run_probe(tiny, probe, str(tmp_path / "x.h5"), decode="gpu")
    cfg = {**yaml.safe_load((REPO / "config.yaml").read_text()), "probe": {"decode": "gpu"}}
    with pytest.raises(WorkflowError) as err:
        validate(cfg, schema=str(SCHEMA))
    text = str(err.value).replace('"', "'")
    assert (
        "'gpu' is not one of ['auto', 'host', 'device']" in text and "On instance['probe']['decode']" in text
    )
    cfg["probe"] = {"threads": 0}
    with pytest.raises(WorkflowError, match="0 is less than the minimum of 1"):
        validate(cfg, schema=str(SCHEMA))


def test_an_image_set_without_files_takes_the_host_path(tiny, tmp_path) -> None:
    """A set whose images come from a loader (the synthetic world's) has no bytes to read: host path."""
    rng = np.random.default_rng(3)
    pictures = [smooth(rng, (48, 40)) for _ in range(5)]
    probe = ImageSet("gen", str(tmp_path), [f"scene{i}" for i in range(5)], loader=pictures.__getitem__)
    for decode in ("host", "device"):
        run_probe(
            tiny, probe, str(tmp_path / f"{decode}.h5"), top_n=2, batch_size=2, progress=False, decode=decode
        )
    host, dev = read_activations(str(tmp_path / "host.h5")), read_activations(str(tmp_path / "device.h5"))
    np.testing.assert_array_equal(host["activations"], dev["activations"])
    assert "decode" not in dev["attrs"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the images under the limit
def test_an_image_too_large_for_pillow_is_skipped_either_way(tiny, tmp_path, monkeypatch) -> None:
    """A JPEG over Pillow's decompression-bomb limit (twice ``Image.MAX_IMAGE_PIXELS``) is skipped by the host
    path; the device path must not decode it instead: it goes to the host path and is skipped with the same
    message. (In this process, without workers, so that the lowered limit holds where the files are read.)"""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 90 x 70 = 6300 px > 6000; 80 x 60 = 4800 px
    images = write_folder(tmp_path / "imgs", n_bad=0)
    big, small = (images / "07.jpg").read_bytes(), (images / "02.jpg").read_bytes()
    assert not device_decodable(big) and device_decodable(small)
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(images)})
    results = [
        run_probe(
            tiny,
            probe,
            str(tmp_path / f"{decode}.h5"),
            top_n=3,
            batch_size=4,
            max_bad_share=0.2,
            progress=False,
            decode=decode,
        )
        for decode in ("host", "device")
    ]
    assert results[0] == results[1] and results[0]["n_skipped"] == 1
    assert "07.jpg" in results[0]["skipped"][0] and "decompression bomb" in results[0]["skipped"][0]


@pytest.mark.parametrize("interpolation", ["lanczos", "nearest"])
def test_a_resize_the_device_path_cannot_reproduce_takes_the_host_path(tiny, tmp_path, interpolation) -> None:
    """A model preprocessed with another resize than bilinear or bicubic (torch has no antialiased lanczos
    kernel, its nearest picks other pixels than Pillow's): probe.decode: device probes it on the host path, the
    same file as decode: host, instead of failing or drifting; the tensor resize refuses the mode by name."""
    tiny.preprocess = Preprocess(input_size=32, resize=37, interpolation=interpolation)
    images = write_folder(tmp_path / "imgs", n_bad=0)
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(images)})
    for decode in ("host", "device"):
        run_probe(
            tiny, probe, str(tmp_path / f"{decode}.h5"), top_n=3, batch_size=4, progress=False, decode=decode
        )
    with h5py.File(tmp_path / "host.h5") as fh, h5py.File(tmp_path / "device.h5") as fd:
        assert dict(fh.attrs) == dict(fd.attrs) and "decode" not in fd.attrs
        for key in ("activations", "topk/index", "topk/value", "topk/maps"):
            np.testing.assert_array_equal(fh[key][()], fd[key][()])
    with pytest.raises(ValueError, match=f"bilinear and bicubic only, not '{interpolation}'"):
        resize_like_pillow(torch.zeros(3, 8, 8, dtype=torch.uint8), (4, 4), interpolation)
