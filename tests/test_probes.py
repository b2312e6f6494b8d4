"""Probe-set kinds, each read from a small on-disk layout the test writes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sieve.backends import BackendError
from sieve.backends.imagesets import BadImage, open_image_set


def _img(path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_imagefolder_recursive_labels_and_limit(tmp_path) -> None:
    for cls in ("b_dog", "a_cat"):
        for i in range(3):
            _img(tmp_path / cls / "sub" / f"{i}.png")
    (tmp_path / "a_cat" / "notes.txt").write_text("not an image")
    ps = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path)})
    assert ps.paths[:2] == ["a_cat/sub/0.png", "a_cat/sub/1.png"] and len(ps) == 6
    assert ps.classes == ["a_cat", "b_dog"] and ps.labels == [0, 0, 0, 1, 1, 1]
    assert ps.load(4).size == (8, 8)
    assert len(open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path), "limit": 2})) == 2
    (tmp_path / "a_cat" / "sub" / "0.png").write_bytes(b"garbage")
    with pytest.raises(BadImage, match="0.png"):
        ps.load(0)


def test_imagefolder_without_class_folders(tmp_path) -> None:
    _img(tmp_path / "x.png")
    _img(tmp_path / "d" / "y.png")
    ps = open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path)})
    assert ps.labels is None and ps.paths == ["d/y.png", "x.png"]


def test_filelist(tmp_path) -> None:
    _img(tmp_path / "imgs" / "a.png", 10)
    _img(tmp_path / "imgs" / "b.png", 20)
    lst = tmp_path / "list.txt"
    lst.write_text("# probe images\nimgs/a.png 3\n\nimgs/b.png 1\n")
    ps = open_image_set("p", {"kind": "filelist", "path": str(lst)})
    assert ps.paths == ["imgs/a.png", "imgs/b.png"] and ps.labels == [3, 1]
    assert np.asarray(ps.load(1))[0, 0, 0] == 20
    lst.write_text("\n")
    with pytest.raises(BackendError, match="lists no images"):
        open_image_set("p", {"kind": "filelist", "path": str(lst)})


def test_places365_layout(tmp_path) -> None:
    (tmp_path / "categories_places365.txt").write_text("/a/airfield 0\n/a/alley 1\n/b/bakery/shop 2\n")
    (tmp_path / "places365_val.txt").write_text(
        "Places365_val_00000002.jpg 2\nPlaces365_val_00000001.jpg 0\n"
    )
    _img(tmp_path / "val_256" / "Places365_val_00000001.jpg")
    _img(tmp_path / "val_256" / "Places365_val_00000002.jpg")
    ps = open_image_set("p", {"kind": "places365", "path": str(tmp_path)})
    assert ps.paths == ["val_256/Places365_val_00000001.jpg", "val_256/Places365_val_00000002.jpg"]
    assert ps.labels == [0, 2] and ps.classes[2] == "/b/bakery/shop"
    assert ps.load(0).size == (8, 8)
    (tmp_path / "places365_val.txt").unlink()
    with pytest.raises(BackendError, match="places365_val.txt is missing"):
        open_image_set("p", {"kind": "places365", "path": str(tmp_path)})


def test_imagenette_layout(tmp_path) -> None:
    _img(tmp_path / "imagenette2-320" / "val" / "n01440764" / "a.JPEG")
    _img(tmp_path / "imagenette2-320" / "val" / "n03888257" / "b.JPEG")
    ps = open_image_set("p", {"kind": "imagenette", "path": str(tmp_path)})
    assert ps.classes == ["tench", "parachute"] and ps.labels == [0, 1]
    assert ps.paths[0] == "imagenette2-320/val/n01440764/a.JPEG"


def test_missing_paths_and_unknown_kind(tmp_path) -> None:
    with pytest.raises(BackendError, match=f"probe path does not exist: {tmp_path / 'nope'}"):
        open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path / "nope")})
    with pytest.raises(BackendError, match="set download: true"):
        open_image_set("p", {"kind": "places365", "path": str(tmp_path / "nope")})
    with pytest.raises(BackendError, match="holds no images"):
        open_image_set("p", {"kind": "imagefolder", "path": str(tmp_path)})
    with pytest.raises(BackendError, match="unknown probe set kind 'lmdb'"):
        open_image_set("p", {"kind": "lmdb"})
