"""Probe stage: one streaming pass of a probe set through a model.

Output: ``results/{model}/{probe}/activations.h5``, whose format (and its readers, which need no torch)
is :mod:`sieve.activations`. Memory for maps is bounded by C x K x h x w (plus one batch) whatever N is. The
file is written under a temporary name and renamed when complete, so a crash never leaves a file that looks
complete.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .activations import printable_attrs, write_image_names
from .backends.imagesets import BadImage, ImageSet
from .backends.models import LoadedModel, Preprocess
from .filenames import printable_name
from .io import atomic_path

log = logging.getLogger(__name__)


class TooManyBadImages(RuntimeError):
    pass


class _ProbeDataset(Dataset):
    def __init__(self, probe: ImageSet, pre: Preprocess) -> None:
        self.probe = probe
        self.pre = pre

    def __len__(self) -> int:
        return len(self.probe)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            img = self.probe.load(i)
            return i, self.pre.normalize(self.pre.geometric(img)), ""
        except BadImage as exc:
            return i, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - any decoding failure of one image is that image's problem
            return i, None, f"{self.probe.paths[i]}: {type(exc).__name__}: {exc}"


def _collate(
    batch: list[tuple[int, torch.Tensor | None, str]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, x) for i, x, _ in batch if x is not None]
    bad = [(i, msg) for i, x, msg in batch if x is None]
    xs = torch.stack([x for _, x in good]) if good else None
    return [i for i, _ in good], xs, bad


@dataclass
class StreamingTopK:
    """Per-neuron top-K over a stream of batches, keeping the maps of the current top K only.

    Ties keep the earlier image (stable), so the result equals a full stable descending sort."""

    n_neurons: int
    k: int
    map_size: tuple[int, int]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        c, k = self.n_neurons, self.k
        h, w = self.map_size
        self.value = torch.full((c, k), -math.inf, device=self.device)
        self.index = torch.full((c, k), -1, dtype=torch.long, device=self.device)
        self.maps = torch.zeros((c, k, h, w), dtype=torch.float16, device=self.device)

    def update(self, pooled: torch.Tensor, maps: torch.Tensor, rows: torch.Tensor) -> None:
        """pooled [B, C], maps [B, C, h, w], rows [B] (global row numbers, increasing)."""
        b = pooled.shape[0]
        vals = torch.cat([self.value, pooled.T.to(self.device)], dim=1)  # [C, K+B]
        idx = torch.cat([self.index, rows.to(self.device).expand(self.n_neurons, b)], dim=1)
        # existing entries hold earlier rows and are already sorted with ties in row order, batch rows come
        # after: one stable descending sort keeps the earlier image first among equal values
        sel = torch.argsort(-vals, dim=1, stable=True)[:, : self.k]  # positions in the concatenation
        new_maps = torch.cat([self.maps, maps.to(self.device, torch.float16).transpose(0, 1)], dim=1)
        self.value = torch.gather(vals, 1, sel)
        self.index = torch.gather(idx, 1, sel)
        hw = new_maps.shape[2:]
        self.maps = torch.gather(new_maps, 1, sel[:, :, None, None].expand(-1, -1, *hw))

    def result(self, n_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = min(self.k, n_rows)
        return (
            self.index[:, :k].cpu().numpy(),
            self.value[:, :k].cpu().numpy(),
            self.maps[:, :k].cpu().numpy(),
        )


def run_probe(
    model: LoadedModel,
    probe: ImageSet,
    out_path: str,
    top_n: int = 20,
    batch_size: int = 64,
    num_workers: int = 0,
    max_bad_share: float = 0.01,
    progress: bool = True,
    probe_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stream ``probe`` through ``model`` and write the activations HDF5 (see module docstring)."""
    n_total = len(probe)
    c = model.n_neurons
    h, w = model.map_size
    loader = DataLoader(
        _ProbeDataset(probe, model.preprocess),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    # no neuron has more top images than the probe has images: allocate for that many, whatever top_n says
    topk = StreamingTopK(c, max(1, min(top_n, n_total)), (h, w), device=model.device)
    skipped: list[tuple[int, str]] = []
    max_bad = max_bad_share * n_total
    n_rows = 0
    names = [printable_name(p) for p in probe.paths]  # before the pass: no name can fail the write ending it
    from tqdm import tqdm

    with atomic_path(out_path, suffix=".h5.partial") as tmp, h5py.File(tmp, "w") as f:
        acts = f.create_dataset(
            "activations",
            shape=(n_total, c),
            maxshape=(None, c),
            dtype="float32",
            chunks=(max(1, min(1024, n_total)), c),
        )
        probe_index = np.zeros(n_total, dtype=np.int64)
        bar = tqdm(
            total=n_total,
            desc=f"probe {model.name}/{probe.name}",
            unit="img",
            disable=not progress,
            mininterval=5.0,
        )
        for idx, xs, bad in loader:
            for i, msg in ((i, printable_name(m)) for i, m in bad):
                log.warning("skipped unreadable image %s", msg)
                skipped.append((i, msg))
            if len(skipped) > max_bad:
                raise TooManyBadImages(
                    f"probe {probe.name!r} ({probe.root}): {len(skipped)} of {n_total} images are unreadable, "
                    f"more than max_bad_image_share={max_bad_share}; first: "
                    + "; ".join(m for _, m in skipped[:5])
                )
            if xs is not None:
                pooled, maps = model.activations(xs)
                b = pooled.shape[0]
                rows = torch.arange(n_rows, n_rows + b)
                acts[n_rows : n_rows + b] = pooled.cpu().numpy()
                probe_index[n_rows : n_rows + b] = idx
                topk.update(pooled, maps, rows)
                n_rows += b
            bar.update(len(idx) + len(bad))
        bar.close()
        if n_rows == 0:
            raise TooManyBadImages(f"probe {probe.name!r} ({probe.root}): no readable image")
        acts.resize((n_rows, c))
        f.create_dataset("probe_index", data=probe_index[:n_rows])
        str_dt = h5py.string_dtype("utf-8")
        write_image_names(f, probe.paths, names, probe_index[:n_rows])
        labels = probe.labels
        f.create_dataset(
            "labels",
            data=np.array(
                [labels[i] if labels is not None else -1 for i in probe_index[:n_rows]], dtype=np.int64
            ),
        )
        f.create_dataset("skipped", data=np.array([m for _, m in skipped], dtype=object), dtype=str_dt)
        t_index, t_value, t_maps = topk.result(n_rows)
        g = f.create_group("topk")
        g.create_dataset("index", data=t_index)
        g.create_dataset("value", data=t_value)
        g.create_dataset("maps", data=t_maps, dtype="float16", compression="gzip", compression_opts=1)
        attrs = {
            **{k: v for k, v in model.info.items() if isinstance(v, (str, int, float))},
            "preprocess": json.dumps(model.info["preprocess"]),
            "map_size": json.dumps(model.info["map_size"]),
            "probe": probe.name,
            "probe_root": printable_name(probe.root),
            "probe_spec": json.dumps(probe_spec or probe.info, sort_keys=True),
            "classes": json.dumps([printable_name(c) for c in probe.classes or []]),
            "n_images_total": n_total,
            "n_skipped": len(skipped),
            "top_n": top_n,
            "complete": 1,
        }
        f.attrs.update(printable_attrs(attrs))
    log.info(
        "probe %s/%s: %d images, %d skipped, %d neurons", model.name, probe.name, n_rows, len(skipped), c
    )
    return {"n_images": n_rows, "n_skipped": len(skipped), "skipped": [m for _, m in skipped]}
