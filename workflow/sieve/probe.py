"""Probe stage: one streaming pass of a probe set through a model.

Output: ``results/{model}/{probe}/activations.h5``, whose format (and its readers, which need no torch)
is :mod:`sieve.activations`. Memory for maps is bounded by C x K x h x w (plus one batch) whatever N is. The
file is written under a temporary name and renamed when complete, so a crash never leaves a file that looks
complete.

Decoding (``probe.decode``): ``host`` decodes and preprocesses every image in the DataLoader workers (Pillow);
``device`` has the workers read JPEG files' bytes only and decodes each batch in the main process with
torchvision's batched ``decode_jpeg`` on the model's device (nvjpeg on a GPU), then resizes, crops and
normalises there (:meth:`Preprocess.geometric_tensor`). A file that is not a plain 8-bit JPEG (PNG, CMYK,
lossless, a file without its end marker, one larger than Pillow opens) and a JPEG that ``decode_jpeg`` rejects
take the host path, so a bad image is skipped with the same message either way. A model whose preprocessing
resizes other than bilinear or bicubic (nearest, lanczos, box, hamming: the tensor resize does not reproduce
Pillow's) is probed on the host path whatever ``probe.decode`` says. ``auto``: ``device`` on a GPU, ``host``
elsewhere.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .activations import printable_attrs, write_image_names
from .backends.imagesets import BadImage, ImageSet
from .backends.models import LoadedModel, Preprocess
from .backends.preprocess import DEVICE_INTERPOLATIONS
from .config import schema_default
from .filenames import printable_name
from .io import atomic_path

log = logging.getLogger(__name__)


class TooManyBadImages(RuntimeError):
    pass


DECODES = ("host", "device", "auto")


def resolve_decode(decode: str, device: torch.device) -> str:
    """``probe.decode`` -> ``host`` or ``device`` (``auto``: ``device`` on a GPU, else ``host``)."""
    if decode not in DECODES:
        raise ValueError(f"probe.decode must be one of {', '.join(DECODES)}, got {decode!r}")
    if decode == "auto":
        return "device" if device.type == "cuda" else "host"
    return decode


# Start-of-frame markers decode_jpeg takes on every device: baseline, extended and progressive Huffman.
_HUFFMAN_SOF = (0xC0, 0xC1, 0xC2)
_OTHER_SOF = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)


def device_decodable(data: bytes) -> bool:
    """True for a JPEG the device path takes: 8-bit Huffman-coded, grey or 3-channel (YCbCr), ending with its
    EOI marker (a truncated file goes to the host path, which reports it), of a size Pillow opens (no more than
    twice ``PIL.Image.MAX_IMAGE_PIXELS``: a larger one goes to the host path, which skips it as a decompression
    bomb, as it would without the device path). Anything else (CMYK, 12-bit, lossless or arithmetic-coded, a
    frame without its height, not a JPEG) returns False: only speed depends on this, never a result."""
    if data[:3] != b"\xff\xd8\xff" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _HUFFMAN_SOF:
            if pos + 10 > len(data) or data[pos + 4] != 8 or data[pos + 9] not in (1, 3):
                return False
            height, width = (int.from_bytes(data[p : p + 2], "big") for p in (pos + 5, pos + 7))
            limit = Image.MAX_IMAGE_PIXELS  # read now: a job may change it
            return height > 0 and width > 0 and (limit is None or height * width <= 2 * limit)
        if marker in _OTHER_SOF or marker == 0xDA:  # another coding, or a scan before any frame header
            return False
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


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


Item = tuple[int, torch.Tensor | None, str]  # (index, preprocessed image or None, error message or "")


class _BytesDataset(_ProbeDataset):
    """The device path's items: a JPEG's bytes, for the main process to decode, or, for any other file, the
    host path's item (preprocessed tensor, or None and the error message)."""

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | bytes | None, str]:  # type: ignore[override]
        try:
            with open(os.path.join(self.probe.root, self.probe.paths[i]), "rb") as fh:
                data = fh.read()
        except OSError:
            data = b""  # the host path reports it
        if not device_decodable(data):
            return super().__getitem__(i)
        return i, data, ""


def _collate_bytes(
    batch: list[tuple[int, torch.Tensor | bytes | None, str]],
) -> tuple[list[Item], list[tuple[int, int]], torch.Tensor]:
    """A batch of :class:`_BytesDataset` items -> (items, (position, size) of each JPEG, the JPEGs' bytes end to
    end in one uint8 tensor: from a worker, one shared-memory block rather than one per image). A JPEG's item
    holds None and "" until :func:`_decode_batch` decodes it."""
    raw = [(j, x) for j, (_, x, _) in enumerate(batch) if isinstance(x, bytes)]
    data = bytearray().join(x for _, x in raw)
    blob = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    items = [(i, None if isinstance(x, bytes) else x, msg) for i, x, msg in batch]
    return items, [(j, len(x)) for j, x in raw], blob


def _decode_batch(
    batch: tuple[list[Item], list[tuple[int, int]], torch.Tensor], host: _ProbeDataset, device: torch.device
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    """One :func:`_collate_bytes` batch -> what :func:`_collate` gives for the host path. The JPEGs are decoded
    together on ``device`` and preprocessed there; one that fails to decode is loaded again by the host path
    (which names the file if it is bad)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    items, raw, blob = batch
    images: dict[int, torch.Tensor] = {}
    if raw:
        data = blob.split([n for _, n in raw])  # contiguous views, no copy
        try:
            decoded = decode_jpeg(list(data), mode=ImageReadMode.RGB, device=device)
            images = {j: img for (j, _), img in zip(raw, decoded, strict=True)}
        except RuntimeError:  # one bad file fails the batch: decode one by one
            for (j, _), x in zip(raw, data, strict=True):
                try:
                    images[j] = decode_jpeg(x, mode=ImageReadMode.RGB, device=device)
                except RuntimeError:
                    items[j] = host[items[j][0]]
    by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for j, img in images.items():
        by_size[tuple(img.shape)].append(j)
    for js in by_size.values():  # one resize per image size: a batch of 500 x 375 photos is one call
        pixels = host.pre.normalize(host.pre.geometric_tensor(_stack([images[j] for j in js])))
        for j, x in zip(js, pixels, strict=True):
            items[j] = (items[j][0], x, "")
    good = [(i, x) for i, x, _ in items if x is not None]
    bad = [(i, msg) for i, x, msg in items if x is None]
    xs = torch.stack([x.to(device) for _, x in good]) if good else None
    return [i for i, _ in good], xs, bad


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """Decoded images of one size [3, H, W] -> [B, 3, H, W], keeping their memory layout: libjpeg's pixels are
    interleaved (a channels-last view), nvjpeg's planar; a copy that changes the layout costs more than the
    resize."""
    if all(img.permute(1, 2, 0).is_contiguous() for img in images):
        return torch.stack([img.permute(1, 2, 0) for img in images]).permute(0, 3, 1, 2)
    return torch.stack(images)


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
    decode: str = schema_default("probe.decode"),
) -> dict[str, Any]:
    """Stream ``probe`` through ``model`` and write the activations HDF5 (see module docstring). ``decode``:
    ``host``, ``device`` or ``auto`` (see module docstring); an image set without files (the synthetic
    world's) and a model whose preprocessing resizes other than bilinear or bicubic always take the host path."""
    n_total = len(probe)
    c = model.n_neurons
    h, w = model.map_size
    on_device = resolve_decode(decode, model.device) == "device" and probe.loader is None
    if on_device and model.preprocess.interpolation not in DEVICE_INTERPOLATIONS:
        (log.warning if decode == "device" else log.info)(
            "probe.decode: %s: model %s resizes with %r, which the device path does not reproduce (%s only): "
            "decoding on the host",
            decode,
            model.name,
            model.preprocess.interpolation,
            " or ".join(DEVICE_INTERPOLATIONS),
        )
        on_device = False
    host = _ProbeDataset(probe, model.preprocess)
    loader = DataLoader(
        _BytesDataset(probe, model.preprocess) if on_device else host,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_bytes if on_device else _collate,
        pin_memory=model.device.type == "cuda" and not on_device,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    batches = (_decode_batch(b, host, model.device) for b in loader) if on_device else loader
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
        for idx, xs, bad in batches:
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
        if on_device:  # only then: a host-decoded file stays as it was before the device path existed
            attrs["decode"] = "device"
        f.attrs.update(printable_attrs(attrs))
    log.info(
        "probe %s/%s: %d images, %d skipped, %d neurons", model.name, probe.name, n_rows, len(skipped), c
    )
    return {"n_images": n_rows, "n_skipped": len(skipped), "skipped": [m for _, m in skipped]}
