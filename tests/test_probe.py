"""Probe stage: streaming top-K, spatial maps, bad images, atomic output."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sieve.activations import read_activations
from sieve.backends.imagesets import open_image_set
from sieve.backends.models import Preprocess, load_model
from sieve.probe import StreamingTopK, TooManyBadImages, run_probe


def test_streaming_topk_equals_full_sort() -> None:
    g = torch.Generator().manual_seed(0)
    n, c, k = 203, 7, 5
    pooled = torch.randn(n, c, generator=g)
    pooled[50:60, 2] = 10.0  # ties: the earlier image must win
    maps = torch.randn(n, c, 2, 3, generator=g)
    topk = StreamingTopK(c, k, (2, 3))
    for start in range(0, n, 16):
        topk.update(
            pooled[start : start + 16], maps[start : start + 16], torch.arange(start, min(n, start + 16))
        )
    index, value, tmaps = topk.result(n)
    ref = np.argsort(-pooled.numpy(), axis=0, kind="stable")[:k].T
    np.testing.assert_array_equal(index, ref)
    np.testing.assert_allclose(value, np.take_along_axis(pooled.numpy().T, ref, 1))
    expect = np.stack([maps[ref[j], j].numpy() for j in range(c)])
    np.testing.assert_allclose(tmaps, expect.astype(np.float16))
    assert index[2].tolist() == [50, 51, 52, 53, 54]


class ColourSpots(nn.Module):
    """``layer4`` = the RGB input average-pooled in 4 x 4 cells: neuron c's map is channel c's brightness."""

    sieve_penultimate = "layer4"

    def __init__(self) -> None:
        super().__init__()
        self.layer4 = nn.AvgPool2d(4)
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer4(x).mean((2, 3)))


def spots_factory():
    return ColourSpots(), Preprocess(input_size=16, resize=16, mean=(0, 0, 0), std=(1, 1, 1))


def write_spot_images(root, n: int = 12) -> dict[str, tuple[int, int, int]]:
    """Black 16 x 16 images with one bright square of a known colour in a known 4 x 4 cell."""
    truth = {}
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ch, cy, cx = i % 3, (i * 5) % 4, (i * 3) % 4
        arr = np.zeros((16, 16, 3), dtype=np.uint8)
        arr[cy * 4 : cy * 4 + 4, cx * 4 : cx * 4 + 4, ch] = 255 - i  # brightness orders images
        name = f"img{i:02d}.png"
        Image.fromarray(arr).save(root / name)
        truth[name] = (ch, cy, cx)
    return truth


def test_maps_locate_the_planted_hot_spot(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "spotsmod", __import__(__name__))
    truth = write_spot_images(tmp_path / "imgs")
    (tmp_path / "imgs" / "junk.png").write_bytes(b"\x89PNG not really")
    model = load_model("spots", {"source": "python", "factory": "spotsmod:spots_factory"})
    assert model.layer == "layer4" and model.map_size == (4, 4) and model.n_neurons == 3
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path / "imgs")})
    out = tmp_path / "acts.h5"
    res = run_probe(model, probe, str(out), top_n=3, batch_size=5, max_bad_share=0.1, progress=False)
    assert res["n_images"] == 12 and res["n_skipped"] == 1 and "junk.png" in res["skipped"][0]
    data = read_activations(str(out))
    with h5py.File(out) as f:
        maps = f["topk/maps"][()]
        assert f["topk/maps"].dtype == np.float16 and maps.shape == (3, 3, 4, 4)
        assert f.attrs["layer"] == "layer4" and f.attrs["n_skipped"] == 1
        assert [s.decode() for s in f["skipped"][()]][0].endswith(
            f"junk.png: cannot identify image file '{tmp_path / 'imgs' / 'junk.png'}'"
        )
    assert "junk.png" not in data["images"] and data["activations"].shape == (12, 3)
    for c in range(3):
        for r in range(3):
            name = data["images"][data["topk_index"][c, r]]
            ch, cy, cx = truth[name]
            assert ch == c  # the neuron's top images are those with its colour
            assert np.unravel_index(np.argmax(maps[c, r]), (4, 4)) == (
                cy,
                cx,
            )  # and the map peaks on the spot
        # sorted descending, brighter (earlier) images first
        assert list(data["topk_value"][c]) == sorted(data["topk_value"][c], reverse=True)


def test_too_many_bad_images_stops_and_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "spotsmod", __import__(__name__))
    write_spot_images(tmp_path / "imgs", n=4)
    for i in range(3):
        (tmp_path / "imgs" / f"bad{i}.jpg").write_bytes(b"nope")
    model = load_model("spots", {"source": "python", "factory": "spotsmod:spots_factory"})
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path / "imgs")})
    out = tmp_path / "acts.h5"
    with pytest.raises(TooManyBadImages, match=r"[23] of 7 images are unreadable.*bad0\.jpg"):
        run_probe(model, probe, str(out), top_n=2, batch_size=2, max_bad_share=0.2, progress=False)
    assert not out.exists() and not list(tmp_path.glob(".acts.h5*"))


def test_crash_mid_run_leaves_no_file_that_looks_complete(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "spotsmod", __import__(__name__))
    write_spot_images(tmp_path / "imgs", n=6)
    model = load_model("spots", {"source": "python", "factory": "spotsmod:spots_factory"})
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path / "imgs")})
    calls = {"n": 0}
    real = model.activations

    def flaky(x, maps=True):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        return real(x, maps)

    monkeypatch.setattr(model, "activations", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_probe(model, probe, str(tmp_path / "acts.h5"), top_n=2, batch_size=2, progress=False)
    assert list(tmp_path.glob("*.h5*")) == [] and list(tmp_path.glob(".*")) == []
