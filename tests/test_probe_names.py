"""Probe file names that are not valid UTF-8 (issue 15, item 3): the pass finishes, the names are stored
losslessly, shown printably, and every later stage still finds the files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from helpers import make_image_folder, run_snakemake, tiny_config
from sieve.activations import image_file_names, read_activations
from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.filenames import from_raw, printable_name, raw_name
from sieve.probe import run_probe
from sieve.select import run_select

ODD = b"x\xe9\xff.png"  # Latin-1 e-acute, then a byte that is never UTF-8


def _odd_folder(root: Path, n: int = 6) -> Path:
    """Class folders of random PNGs; every ``odd`` image has a name that is not valid UTF-8, and one
    unreadable file has such a name too."""
    make_image_folder(root, n_per_class=n, corrupt=0)
    rng = np.random.default_rng(1)
    odd = os.fsencode(root / "odd")
    os.mkdir(odd)
    for i in range(n):
        arr = rng.integers(0, 255, size=(48, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(os.path.join(odd, b"%d" % i + ODD), format="PNG")
    with open(os.path.join(odd, b"broken\xfe.jpg"), "wb") as fh:
        fh.write(b"not a jpeg" * 10)
    return root


def test_printable_and_raw_forms_round_trip() -> None:
    name = os.fsdecode(ODD)
    assert printable_name(name) == "x\\xe9\\xff.png" and printable_name("café.png") == "café.png"
    assert from_raw(raw_name(name)) == name and raw_name(name) == ODD


def test_probe_pass_survives_and_stores_names_losslessly(tmp_path: Path) -> None:
    root = _odd_folder(tmp_path / "imgs")
    model = load_model("tiny", {"source": "python", "factory": "tinymodels:hotspot_cnn"})
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(root)})
    out = tmp_path / "acts.h5"
    res = run_probe(model, probe, str(out), top_n=4, batch_size=4, max_bad_share=0.2, progress=False)
    assert res["n_images"] == 18 and res["n_skipped"] == 1
    assert res["skipped"][0].startswith(f"{root}/odd/broken\\xfe.jpg: ")
    data = read_activations(str(out))
    assert "odd/0x\\xe9\\xff.png" in data["images"]
    with h5py.File(out) as f:
        assert [s.decode() for s in f["skipped"][()]] == res["skipped"]
        assert json.loads(f.attrs["classes"]) == ["cats", "dogs", "odd"]
    names = image_file_names(str(out))
    assert names == [probe.paths[i] for i in data["probe_index"]]
    assert all(os.path.isfile(os.path.join(root, n)) for n in names)  # the lossless form finds every file
    assert os.fsencode(names[data["images"].index("odd/0x\\xe9\\xff.png")]) == b"odd/0" + ODD

    run_select(data, str(tmp_path / "summary.json"), str(tmp_path / "neurons"), tau=0.0, top_n=4)
    paths = {
        t["path"] for p in (tmp_path / "neurons").glob("*.json") for t in json.loads(p.read_text())["top"]
    }
    assert paths and all(p in data["images"] for p in paths)


def test_utf8_names_keep_the_file_as_before(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", n_per_class=2, corrupt=0)
    model = load_model("tiny", {"source": "python", "factory": "tinymodels:hotspot_cnn"})
    probe = open_image_set("p", {"kind": "imagefolder", "path": str(root)})
    run_probe(model, probe, str(tmp_path / "a.h5"), top_n=2, batch_size=4, progress=False)
    with h5py.File(tmp_path / "a.h5") as f:
        assert "image_names_raw" not in f
    assert image_file_names(str(tmp_path / "a.h5")) == probe.paths


@pytest.mark.workflow
@pytest.mark.slow
def test_a_whole_run_over_odd_names(tmp_path: Path) -> None:
    """The default target (report) over a folder of such names: crops, grids, CLIP-Dissect's image embedding
    and the report find every image (none is drawn grey or embedded as NaN)."""
    from tinyclip import make_tiny_clip

    root = _odd_folder(tmp_path / "images")
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\ngreen\n", encoding="utf-8")
    cfg = tiny_config(
        root,
        words,
        embedder=make_tiny_clip(tmp_path / "clip"),
        generator={
            "source": "python",
            "factory": "tinydiffusion:pattern_generator",
            "resolution": 16,
            "images_per_concept": 2,
            "shards": 1,
            "thumbnail_size": 16,
        },
        select={"tau": 1e-6, "top_n": 18},
        hypothesize={"concepts_per_cluster": 2, "methods": ["sieve", "clip_dissect"]},
    )
    run_snakemake(tmp_path / "run", cfg)
    res = tmp_path / "run" / "results"
    assert (res / "report" / "index.html").is_file()
    with h5py.File(res / "tiny/pics/activations.h5") as f:
        raw = [bytes(a) for a in f["image_names_raw"][()]]
    assert b"odd/0" + ODD in raw
    with h5py.File(res / "tiny/pics/crops/crops.h5") as f:
        assert np.isfinite(f["embeddings"][()]).all()
    logs = tmp_path / "run" / "logs" / "tiny" / "pics"
    assert "drawn grey" not in (logs / "neuron_grids.log").read_text()
    assert "broken\\xfe.jpg" in (logs / "probe_activations.log").read_text()
