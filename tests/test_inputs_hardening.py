"""Inputs that used to exhaust memory or reach results raw (issue 15: item 5's allocation cap, and control
characters in concepts from its "Also" paragraph)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

import sieve.probe
from helpers import make_image_folder
from sieve.activations import read_activations
from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.concepts import clean_concepts, load_concept_set
from sieve.probe import run_probe
from sieve.select import run_select


def test_top_n_beyond_the_probe_allocates_for_the_images_only(tmp_path: Path, monkeypatch) -> None:
    """top_n = 10^8 over 6 images: the per-neuron top-K buffers hold 6 entries (they were sized by top_n:
    maps alone were neurons x 10^8 x h x w float16), and the outputs are those of top_n = 6."""
    real = sieve.probe.StreamingTopK
    sizes = []

    def spy(n_neurons: int, k: int, *args, **kwargs):
        sizes.append(k)
        if k > 6:
            raise AssertionError(f"top-K buffers sized for {k} images, the probe has 6")
        return real(n_neurons, k, *args, **kwargs)

    monkeypatch.setattr(sieve.probe, "StreamingTopK", spy)
    root = make_image_folder(tmp_path / "imgs", n_per_class=3, corrupt=0)
    model = load_model("tiny", {"source": "python", "factory": "tinymodels:hotspot_cnn"})
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(root)})
    run_probe(model, probe, str(tmp_path / "big.h5"), top_n=100_000_000, batch_size=4, progress=False)
    run_probe(model, probe, str(tmp_path / "six.h5"), top_n=6, batch_size=4, progress=False)
    assert sizes == [6, 6]
    with h5py.File(tmp_path / "big.h5") as big, h5py.File(tmp_path / "six.h5") as six:
        assert big["topk/maps"].shape == six["topk/maps"].shape == (8, 6, 4, 4)
        assert (big["topk/index"][()] == six["topk/index"][()]).all()
        assert big.attrs["top_n"] == 100_000_000
    summary = run_select(
        read_activations(str(tmp_path / "big.h5")),
        str(tmp_path / "s.json"),
        str(tmp_path / "neurons"),
        tau=1e-6,
        top_n=100_000_000,
    )
    assert summary["n_selected"] > 0
    first = json.loads(next((tmp_path / "neurons").glob("*.json")).read_text())
    assert len(first["top"]) == 6


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("a\x00b", "ab"),
        ("\x1b[31mred\x1b[0m", "[31mred[0m"),
        ("del\x7f", "del"),
        ("c1\x9bx", "c1x"),
        ("tab\tkept", "tab kept"),
        ("file\x1csep", "file sep"),
        ("nel\x85line", "nel line"),
    ],
)
def test_control_characters_are_removed(raw: str, text: str) -> None:
    assert clean_concepts([raw]).concepts == [text]


def test_control_characters_are_counted_like_blanks(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("red\x00\nblue\n\x00\x07\nred\ngreen\x1b\n", encoding="utf-8")
    doc = load_concept_set("w", {"path": str(words)})
    assert [c["text"] for c in doc["concepts"]] == ["red", "blue", "green"]
    assert (doc["n_raw"], doc["n_blank"], doc["n_duplicates"], doc["n_control"]) == (5, 1, 1, 3)
    assert all("\x00" not in c["text"] for c in doc["concepts"])


def test_a_clean_list_has_no_control_count(tmp_path: Path) -> None:
    """concepts.json of a list without control characters is unchanged (no n_control key)."""
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\n", encoding="utf-8")
    assert list(load_concept_set("w", {"path": str(words)})) == [
        "concept_set",
        "source",
        "n_raw",
        "n_blank",
        "n_duplicates",
        "concepts",
    ]
