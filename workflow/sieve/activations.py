"""The probe's activations file: its format, and the readers every later stage uses (h5py and numpy only,
so that a job that only reads it never imports torch).

``results/{model}/{probe}/activations.h5``, written by :func:`sieve.probe.run_probe`:

- ``activations`` float32 [N, C]: pooled activation of every neuron on every readable image;
- ``images`` [N] (str): paths relative to the probe root; ``probe_index`` [N] int64: index in the probe set;
  ``labels`` [N] int64 (-1 where the set has no labels);
- ``topk/index`` [C, K] int64 (rows of ``activations``), ``topk/value`` [C, K] float32, ``topk/maps``
  [C, K, h, w] float16: each neuron's K highest images, sorted descending, with their spatial maps;
- ``skipped`` [S] (str): unreadable images with the reason;
- ``image_names_raw`` [N] (vlen uint8), only when a name is not valid UTF-8: the exact bytes of each name in
  ``images`` (which shows such names with ``\\xNN`` escapes, see :mod:`sieve.filenames`);
- attributes: model, source, arch, weights, layer, preprocess (JSON), probe, probe_spec (JSON), n_skipped,
  complete=1; decode="device" only where the probe decoded on the device (``probe.decode``, :mod:`sieve.probe`).
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np

from .filenames import from_raw, printable_name, raw_name


def write_image_names(f: h5py.File, paths: list[str], names: list[str], rows: np.ndarray) -> None:
    """The ``images`` dataset (``names``: the printable forms of ``paths``) and, when a name is not valid UTF-8,
    ``image_names_raw``, its exact bytes, so that no name is lost."""
    f.create_dataset(
        "images", data=np.array([names[i] for i in rows], dtype=object), dtype=h5py.string_dtype("utf-8")
    )
    if any(names[i] != paths[i] for i in rows):
        raw = np.empty(len(rows), dtype=object)
        raw[:] = [np.frombuffer(raw_name(paths[i]), dtype=np.uint8) for i in rows]
        f.create_dataset("image_names_raw", data=raw, dtype=h5py.vlen_dtype(np.uint8))


def image_file_names(path: str) -> list[str]:
    """The names of the images of an activations file as the file system holds them (the ``str`` that opens
    each file), also for names that are not valid UTF-8."""
    with h5py.File(path, "r") as f:
        if "image_names_raw" in f:
            return [from_raw(bytes(a)) for a in f["image_names_raw"][()]]
        return [s.decode() if isinstance(s, bytes) else s for s in f["images"][()]]


def printable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """HDF5 attributes with every string printable (a probe root or folder name may not be valid UTF-8)."""
    return {k: printable_name(v) if isinstance(v, str) else v for k, v in attrs.items()}


def read_activations(path: str) -> dict[str, Any]:
    """Everything but the maps, as numpy arrays (small enough for every later stage)."""
    with h5py.File(path, "r") as f:
        if not f.attrs.get("complete"):
            raise RuntimeError(f"{path} is not a complete sieve activations file")
        return {
            "activations": f["activations"][()],
            "images": [s.decode() if isinstance(s, bytes) else s for s in f["images"][()]],
            "probe_index": f["probe_index"][()],
            "labels": f["labels"][()],
            "topk_index": f["topk/index"][()],
            "topk_value": f["topk/value"][()],
            "attrs": dict(f.attrs),
        }
