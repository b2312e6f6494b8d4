"""Hypothesize, steps 1 and 2: crop each selected neuron's top images to the region of highest activation
and CLIP-embed every crop (``crops.h5``, read back by :func:`sieve.hypothesize.read_crops`).

1. **Crop** (:func:`crop_box`): a neuron's spatial map on one of its top images is upsampled (bilinear,
   ``align_corners=False``) to the model's input size S, the exact [0, 1] image the model saw
   (``Preprocess.geometric``). ``method: region`` (default) takes the connected region (8-connected) holding
   the map's maximum among pixels ``>= threshold * max`` (for a map whose maximum is <= 0, ViT tokens for
   instance, ``threshold`` applies to the min-max normalised map instead); ``method: window`` takes a window
   of side ``window * S`` centred on the maximum. Boxes are then made square (the short side grows around
   the centre, shifted to stay inside the image) and at least ``min_size * S`` wide, so CLIP sees them
   undistorted. A flat map gives the whole image. Boxes are ``x0, y0, x1, y1`` in model-input pixels,
   ``x1``/``y1`` exclusive.
2. **Embed** (:func:`run_embed_crops`): every crop of every selected neuron of a model/probe pair, in one
   batched job: each probe image is loaded once (DataLoader workers), its crops are resized to the
   embedder's input side and encoded in batches. ``crops.h5``: ``neurons`` [S], ``rows`` / ``probe_index`` /
   ``activation`` / ``paths`` [S, K], ``boxes`` [S, K, 4], ``embeddings`` [S, K, D] float32 L2-normalised.

   Where crops are cut and resized is ``hypothesize.crop.resize`` (:func:`resolve_resize`; ``auto``, the
   default, is ``device`` on CUDA and ``host`` elsewhere, so CPU runs keep the host path):

   - ``host``: the workers cut each crop from the [0, 1] image and resize it with
     :func:`cut_and_resize` (bilinear, antialiased), then send it as float16.
   - ``device``: the workers send the model's S x S image as uint8 (``Preprocess.geometric`` is exactly
     uint8 / 255, so nothing is lost), each image goes to the device once, and all its crops are cut and
     resized there at once by :func:`cut_and_resize_on_device` (``torchvision.ops.roi_align``,
     ``aligned=True``, float32). roi_align averages, per output pixel, a grid of bilinear samples spread
     over that pixel's footprint in the box; ``sampling_ratio=-1`` makes the grid ``ceil(box side /
     embedder side)`` points a side, so downsampling is an area (box-filter) average, where the host's
     antialiased bilinear is a triangle filter twice as wide: slightly sharper crops. Upsampling (a box
     smaller than the embedder's side) samples once per pixel at the same positions as the host's bilinear
     resize; only the outermost pixels differ (roi_align reads the image just outside the box, the host
     repeats the box's edge). The embedder then normalises and encodes the crops as usual (an open_clip
     embedder skips its resize, the crops being its side already). In the tests (a tiny open_clip with
     random weights, ``tests/test_hypothesize.py``) every crop's embedding has a cosine of 0.99 or more with
     the host path's; ``crops.h5``'s ``crop`` attribute records ``"resize": "device"`` when this path made
     them.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .config import with_defaults
from .hypothesize import STR_DT, HypothesizeError, embedder_key
from .io import atomic_path, read_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

_CROP = with_defaults(None, "hypothesize.crop")


# ----------------------------------------------------------------------------------------------------------
# 1. crops


def upsample_map(fmap: np.ndarray | torch.Tensor, size: int) -> np.ndarray:
    """[h, w] (or [B, h, w]) map -> [size, size] (or [B, size, size]) float32, bilinear, align_corners=False."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(fmap, dtype=np.float32))
    squeeze = t.dim() == 2
    if squeeze:
        t = t[None]
    up = F.interpolate(t[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return (up[0] if squeeze else up).numpy()


def _fit_square(cx: float, cy: float, side: int, size: int) -> tuple[int, int, int, int]:
    """A side x side box centred near (cx, cy), shifted to stay inside [0, size)."""
    side = int(min(max(side, 1), size))
    x0 = int(round(cx - side / 2))
    y0 = int(round(cy - side / 2))
    x0 = min(max(x0, 0), size - side)
    y0 = min(max(y0, 0), size - side)
    return x0, y0, x0 + side, y0 + side


def crop_box(
    up: np.ndarray,
    method: str = _CROP["method"],
    threshold: float = _CROP["threshold"],
    min_size: float = _CROP["min_size"],
    window: float = _CROP["window"],
) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1), exclusive ends, of the most activated part of an upsampled [S, S] map."""
    from scipy import ndimage

    up = np.asarray(up, dtype=np.float64)
    size = up.shape[0]
    if up.shape != (size, size):
        raise ValueError(f"crop_box expects a square map, got {up.shape}")
    lo, hi = float(up.min()), float(up.max())
    if not np.isfinite(hi) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return 0, 0, size, size
    peak_y, peak_x = np.unravel_index(int(np.argmax(up)), up.shape)
    min_side = int(math.ceil(min_size * size))
    if method == "window":
        return _fit_square(peak_x + 0.5, peak_y + 0.5, max(int(round(window * size)), min_side), size)
    if method != "region":
        raise ValueError(f"hypothesize.crop.method must be 'region' or 'window', not {method!r}")
    mask = up >= threshold * hi if hi > 0 else (up - lo) / (hi - lo) >= threshold
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    region = labels == labels[peak_y, peak_x]
    ys, xs = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))  # its bounding box
    x0, x1, y0, y1 = int(xs[0]), int(xs[-1]) + 1, int(ys[0]), int(ys[-1]) + 1
    side = max(x1 - x0, y1 - y0, min_side)
    return _fit_square((x0 + x1) / 2, (y0 + y1) / 2, side, size)


def neuron_boxes(maps: np.ndarray, size: int, crop: dict[str, Any]) -> np.ndarray:
    """[K, h, w] maps of one neuron -> [K, 4] int boxes in model-input pixels."""
    ups = upsample_map(maps, size) if len(maps) else np.zeros((0, size, size), np.float32)
    kw = {k: crop[k] for k in ("method", "threshold", "min_size", "window") if k in crop}
    return np.array([crop_box(u, **kw) for u in ups], dtype=np.int32).reshape(-1, 4)


def cut_and_resize(
    image: torch.Tensor, box: tuple[int, int, int, int] | np.ndarray, side: int
) -> torch.Tensor:
    """[3, S, S] image in [0, 1] -> the box's crop resized to [3, side, side] (antialiased bilinear)."""
    import torch.nn.functional as F

    x0, y0, x1, y1 = (int(v) for v in box)
    crop = image[:, y0:y1, x0:x1]
    return F.interpolate(crop[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False)[
        0
    ].clamp(0, 1)


RESIZE_MODES = ("host", "device", "auto")


def resolve_resize(mode: str, device: torch.device | str) -> str:
    """``hypothesize.crop.resize`` -> ``host`` or ``device`` (``auto``: ``device`` on CUDA, else ``host``)."""
    import torch

    if mode not in RESIZE_MODES:
        raise HypothesizeError(
            f"config key hypothesize.crop.resize must be one of {', '.join(RESIZE_MODES)}, not {mode!r}"
        )
    if mode == "auto":
        return "device" if torch.device(device).type == "cuda" else "host"
    return mode


def cut_and_resize_on_device(
    images: torch.Tensor, image_index: torch.Tensor, boxes: torch.Tensor, side: int
) -> torch.Tensor:
    """Every box's crop, resized to [3, side, side], in one ``roi_align`` call on the images' device.

    ``images``: [N, 3, S, S] uint8 (0..255) or float in [0, 1]; ``image_index``: [M] the image of each box;
    ``boxes``: [M, 4] ``x0, y0, x1, y1`` in pixels, ends exclusive (as :func:`crop_box`). -> [M, 3, side, side]
    float32 in [0, 1] (the resampling is in the module docstring)."""
    import torch
    from torchvision.ops import roi_align

    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    rois = torch.cat(
        [
            torch.as_tensor(image_index, device=x.device).to(torch.float32).view(-1, 1),
            torch.as_tensor(boxes, device=x.device).to(torch.float32).view(-1, 4),
        ],
        dim=1,
    )
    if not len(rois):
        return x.new_zeros((0, x.shape[1], side, side))
    # aligned=True: a box [x0, x1) covers exactly pixels x0..x1-1; sampling_ratio=-1: ceil(box / side) samples
    # per output pixel and side, an area average when downsampling
    out = roi_align(x, rois, (side, side), spatial_scale=1.0, sampling_ratio=-1, aligned=True)
    return out.clamp_(0, 1)


def embed_boxes_on_device(
    images: torch.Tensor,
    image_index: torch.Tensor,
    boxes: torch.Tensor,
    embedder: Any,
    side: int,
    batch_size: int,
) -> torch.Tensor:
    """The ``device`` path from decoded images to embeddings: ``images`` ([N, 3, S, S], uint8 or [0, 1] float,
    already on the device) are cut and resized (:func:`cut_and_resize_on_device`) and encoded by
    ``embedder.encode_images`` (its own normalisation) in batches of ``batch_size`` crops. -> [M, D] on the
    CPU, in the order of ``boxes``."""
    import torch

    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    out = []
    for i in range(0, len(boxes), batch_size):
        crops = cut_and_resize_on_device(x, image_index[i : i + batch_size], boxes[i : i + batch_size], side)
        out.append(embedder.encode_images(crops).float().cpu())
    return torch.cat(out) if out else torch.zeros((0, int(embedder.dim)))


def read_selected(neurons_dir: str) -> list[dict[str, Any]]:
    """Every ``{neuron}.json`` of a select/neurons directory, sorted by neuron id."""
    files = sorted(Path(neurons_dir).glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    out = []
    for p in files:
        if not p.stem.isdigit():
            raise HypothesizeError(f"unexpected file {p} in {neurons_dir} (expected <neuron id>.json)")
        out.append(read_json(p))
    return out


class _CropDataset:
    """One item per probe image: its crops (all neurons that have it among their top images), cut and resized
    here (``host``), or the model's S x S image as uint8 (``device``: the main process holds the boxes)."""

    def __init__(
        self,
        probe: Any,
        pre: Any,
        jobs: list[tuple[int, list[tuple[int, int, np.ndarray]]]],
        side: int,
        resize: str = "host",
    ) -> None:
        self.probe, self.pre, self.jobs, self.side, self.resize = probe, pre, jobs, side, resize

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> tuple[list[tuple[int, int]], torch.Tensor | None, str]:
        pi, crops = self.jobs[i]
        try:
            img = self.pre.geometric(self.probe.load(pi))
        except Exception as exc:  # noqa: BLE001 - reported with the neurons concerned
            return [(s, k) for s, k, _ in crops], None, f"{self.probe.paths[pi]} (probe index {pi}): {exc}"
        import torch

        if self.resize == "device":  # geometric() is uint8 / 255 (to_tensor): the uint8 image is exact
            return [(s, k) for s, k, _ in crops], img.mul(255).round_().to(torch.uint8), ""
        x = torch.stack([cut_and_resize(img, box, self.side) for _, _, box in crops])
        return [(s, k) for s, k, _ in crops], x.to(torch.float16), ""


def _collate_crops(batch: list) -> list:
    return batch


def _collate_images(batch: list) -> tuple[list, torch.Tensor, list[str]]:
    """``device``: the batch's uint8 images stacked into one tensor (pinned by the DataLoader on CUDA)."""
    import torch

    shape = next((x.shape for _, x, _ in batch if x is not None), (3, 1, 1))
    images = torch.stack([x if x is not None else torch.zeros(shape, dtype=torch.uint8) for _, x, _ in batch])
    return [pos for pos, _, _ in batch], images, [err for _, _, err in batch]


@dataclass
class TopImages:
    """What ``activations.h5`` holds for the selected neurons: their top images and spatial maps."""

    pre: Any  # the model's Preprocess
    neurons: np.ndarray  # [S] neuron ids
    k: int  # top images per neuron
    rows: np.ndarray  # [S, K] rows of activations.h5
    activation: np.ndarray  # [S, K] pooled activations
    probe_index: np.ndarray  # [S, K] indices into the probe's image set
    maps: np.ndarray  # [S, K, h, w] float32
    attrs: dict[str, Any]


def read_top_images(activations_h5: str, neurons_dir: str, selected: list[dict[str, Any]]) -> TopImages:
    """Phase 1: the top images and maps of the selected neurons, checked against ``select/neurons``."""
    from .backends.models import Preprocess

    with h5py.File(activations_h5, "r") as f:
        if not f.attrs.get("complete"):
            raise HypothesizeError(f"{activations_h5} is not a complete sieve activations file")
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
        t_index = f["topk/index"][()]
        t_value = f["topk/value"][()]
        pidx_all = f["probe_index"][()]
        attrs = {k: f.attrs[k] for k in ("model", "layer", "probe") if k in f.attrs}
        neurons = np.array([int(d["neuron"]) for d in selected], dtype=np.int64)
        k = len(selected[0]["top"]) if selected else 0
        for d in selected:
            n = int(d["neuron"])
            if len(d["top"]) != k:
                raise HypothesizeError(f"{neurons_dir}/{n}.json has {len(d['top'])} top images, others {k}")
            if (
                n >= t_index.shape[0]
                or k > t_index.shape[1]
                or [t["index"] for t in d["top"]] != t_index[n, :k].tolist()
            ):
                raise HypothesizeError(
                    f"{neurons_dir}/{n}.json does not match the top images of neuron {n} in "
                    f"{activations_h5}; rerun select"
                )
        maps = f["topk/maps"][()]  # C x K x h x w float16: bounded by the probe stage's own memory
    rows = t_index[neurons, :k] if len(neurons) else np.zeros((0, k), np.int64)
    return TopImages(
        pre=pre,
        neurons=neurons,
        k=k,
        rows=rows,
        activation=t_value[neurons, :k].astype(np.float32) if len(neurons) else np.zeros((0, k), np.float32),
        probe_index=pidx_all[rows] if rows.size else np.zeros(rows.shape, np.int64),
        maps=maps[neurons, :k].astype(np.float32),
        attrs=attrs,
    )


def crop_boxes(top: TopImages, crop: dict[str, Any], threads: int = 1) -> np.ndarray:
    """Phase 2: [S, K, 4] boxes, in model-input pixels, of every top image of every selected neuron; one neuron
    at a time on each of ``threads`` threads (the upsampling and ``ndimage.label`` release the GIL)."""
    boxes = np.zeros((len(top.neurons), top.k, 4), dtype=np.int32)

    def one(s: int) -> None:
        boxes[s] = neuron_boxes(top.maps[s], top.pre.input_size, crop)

    if threads > 1 and len(top.neurons) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(threads, len(top.neurons))) as pool:
            list(pool.map(one, range(len(top.neurons))))
    else:
        for s in range(len(top.neurons)):
            one(s)
    return boxes


def crop_jobs(
    probe_index: np.ndarray, boxes: np.ndarray
) -> list[tuple[int, list[tuple[int, int, np.ndarray]]]]:
    """Phase 3: one job per probe image (by index): every (neuron slot, rank, box) that crops it."""
    by_image: dict[int, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
    for s in range(probe_index.shape[0]):
        for r in range(probe_index.shape[1]):
            by_image[int(probe_index[s, r])].append((s, r, boxes[s, r]))
    return sorted(by_image.items())


def _image_loader(
    jobs: list[tuple[int, list[tuple[int, int, np.ndarray]]]],
    top: TopImages,
    probe: Any,
    side: int,
    batch_size: int,
    num_workers: int,
    resize: str,
    device: torch.device | str = "cpu",
) -> Any:
    """Phase 4's DataLoader: one :class:`_CropDataset` item per probe image, about ``batch_size`` crops a batch;
    ``device``: the uint8 images stacked (:func:`_collate_images`), pinned on CUDA."""
    import torch

    on_device = resize == "device"
    return torch.utils.data.DataLoader(
        _CropDataset(probe, top.pre, jobs, side, resize=resize),
        batch_size=max(1, batch_size // max(1, top.k)),
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_images if on_device else _collate_crops,
        pin_memory=on_device and torch.device(device).type == "cuda",
        prefetch_factor=4 if num_workers > 0 else None,
    )


def _unreadable(top: TopImages, positions: list[tuple[int, int]], err: str) -> HypothesizeError:
    """The error for a top image that the probe read but this job cannot, naming the neurons that have it."""
    ns = sorted({int(top.neurons[s]) for s, _ in positions})
    return HypothesizeError(f"top image {err} of neuron(s) {ns} cannot be read any more")


def embed_crop_jobs(
    jobs: list[tuple[int, list[tuple[int, int, np.ndarray]]]],
    top: TopImages,
    probe: Any,
    embedder: Any,
    side: int,
    batch_size: int,
    num_workers: int,
    resize: str = "host",
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, int]:
    """Phase 4: load each probe image once (DataLoader workers), cut its crops, embed them in batches; where
    the crops are cut and resized is ``resize`` (``host`` or ``device``: see the module docstring).
    -> ([S, K, D] embeddings, number of crops)."""
    import torch

    if resize == "device":
        return _embed_crop_jobs_on_device(jobs, top, probe, embedder, side, batch_size, num_workers, device)
    if resize != "host":
        raise HypothesizeError(f"embed_crop_jobs: resize must be 'host' or 'device', not {resize!r}")
    from tqdm import tqdm

    emb = np.full((len(top.neurons), top.k, int(embedder.dim)), np.nan, dtype=np.float32)
    loader = _image_loader(jobs, top, probe, side, batch_size, num_workers, "host")
    pending_pos: list[tuple[int, int]] = []
    pending_x: list[torch.Tensor] = []

    def flush() -> None:
        if not pending_pos:
            return
        x = torch.cat(pending_x)
        for i in range(0, len(x), batch_size):
            z = embedder.encode_images(x[i : i + batch_size].float()).float().numpy()
            for (s, r), v in zip(pending_pos[i : i + batch_size], z, strict=True):
                emb[s, r] = v
        pending_pos.clear()
        pending_x.clear()

    n_crops = 0
    for batch in tqdm(loader, desc="crops", unit="img", mininterval=5.0, total=len(loader)):
        for pos, x, err in batch:
            if x is None:
                raise _unreadable(top, pos, err)
            pending_pos.extend(pos)
            pending_x.append(x)
            n_crops += len(pos)
        if len(pending_pos) >= batch_size:
            flush()
    flush()
    if not np.isfinite(emb).all():
        raise HypothesizeError("some crops got no embedding (non-finite values)")
    return emb, n_crops


def _embed_crop_jobs_on_device(
    jobs: list[tuple[int, list[tuple[int, int, np.ndarray]]]],
    top: TopImages,
    probe: Any,
    embedder: Any,
    side: int,
    batch_size: int,
    num_workers: int,
    device: torch.device | str,
) -> tuple[np.ndarray, int]:
    """:func:`embed_crop_jobs` with ``resize: device``: the workers send uint8 S x S images, each goes to the
    device once, and every crop of the images gathered (at least ``batch_size`` crops) is cut, resized and
    embedded there (:func:`embed_boxes_on_device`)."""
    import torch
    from tqdm import tqdm

    device = torch.device(device)
    emb = np.full((len(top.neurons), top.k, int(embedder.dim)), np.nan, dtype=np.float32)
    box_of = {(s, r): box for _, crops in jobs for s, r, box in crops}
    loader = _image_loader(jobs, top, probe, side, batch_size, num_workers, "device", device)
    pending_pos: list[tuple[int, int]] = []
    pending_index: list[int] = []
    pending_images: list[torch.Tensor] = []
    n_images = 0

    def flush() -> None:
        nonlocal n_images
        if not pending_pos:
            return
        images = torch.cat(pending_images)
        boxes = torch.from_numpy(np.stack([box_of[p] for p in pending_pos]).astype(np.float32))
        z = embed_boxes_on_device(
            images, torch.tensor(pending_index), boxes, embedder, side, batch_size
        ).numpy()
        for (s, r), v in zip(pending_pos, z, strict=True):
            emb[s, r] = v
        pending_pos.clear()
        pending_index.clear()
        pending_images.clear()
        n_images = 0

    n_crops = 0
    for positions, images, errors in tqdm(
        loader, desc="crops", unit="img", mininterval=5.0, total=len(loader)
    ):
        for pos, err in zip(positions, errors, strict=True):
            if err:
                raise _unreadable(top, pos, err)
        pending_images.append(images.to(device, non_blocking=True))
        for j, pos in enumerate(positions):
            pending_pos.extend(pos)
            pending_index.extend([n_images + j] * len(pos))
            n_crops += len(pos)
        n_images += len(positions)
        if len(pending_pos) >= batch_size:
            flush()
    flush()
    if not np.isfinite(emb).all():
        raise HypothesizeError("some crops got no embedding (non-finite values)")
    return emb, n_crops


def write_crops(
    out_h5: str,
    top: TopImages,
    boxes: np.ndarray,
    emb: np.ndarray,
    paths: list[list[str]],
    attrs: dict[str, Any],
) -> None:
    """Phase 5: ``crops.h5`` (layout in the module docstring), atomically."""
    with atomic_path(out_h5, suffix=".h5.partial") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("neurons", data=top.neurons)
        f.create_dataset("rows", data=top.rows.astype(np.int64))
        f.create_dataset("probe_index", data=top.probe_index.astype(np.int64))
        f.create_dataset("boxes", data=boxes)
        f.create_dataset("activation", data=top.activation)
        f.create_dataset("embeddings", data=emb)
        f.create_dataset(
            "paths", data=np.array(paths, dtype=object).reshape(len(top.neurons), top.k), dtype=STR_DT
        )
        f.attrs.update(attrs)


def run_embed_crops(
    activations_h5: str,
    neurons_dir: str,
    probe: Any,
    embedder: Any,
    out_h5: str,
    spec: dict[str, Any],
    crop: dict[str, Any] | None = None,
    batch_size: int = 64,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Crop every top image of every selected neuron and embed the crops (see the module docstring), in
    phases: read the top images, box them, group the crops by image, embed, write ``crops.h5``. ``device``:
    where ``crop.resize: device`` (or ``auto`` on CUDA) cuts and resizes the crops."""
    from .backends.embedders import embedder_image_size

    crop = dict(crop or {})
    resize = resolve_resize(crop.pop("resize", _CROP["resize"]), device)
    if resize == "device":  # recorded only where it departs from the host path (older files: host)
        crop["resize"] = "device"
    selected = read_selected(neurons_dir)
    top = read_top_images(activations_h5, neurons_dir, selected)
    boxes = crop_boxes(top, crop, threads=max(1, num_workers))
    jobs = crop_jobs(top.probe_index, boxes)
    side = embedder_image_size(embedder)
    emb, n_crops = embed_crop_jobs(
        jobs, top, probe, embedder, side, batch_size, num_workers, resize=resize, device=device
    )
    write_crops(
        out_h5,
        top,
        boxes,
        emb,
        [[t["path"] for t in d["top"]] for d in selected],
        {
            **top.attrs,
            "embedder": embedder_key(spec),
            "embedder_name": str(embedder.name),
            "dim": int(embedder.dim),
            "crop": json.dumps(crop, sort_keys=True),
            "crop_side": side,
            "input_size": top.pre.input_size,
            "preprocess": json.dumps(top.pre.as_dict()),
            "complete": 1,
        },
    )
    log.info(
        "embedded %d crops of %d neurons from %d images (dim %d, crops resized on the %s)",
        n_crops,
        len(top.neurons),
        len(jobs),
        int(embedder.dim),
        resize,
    )
    return {"n_neurons": len(top.neurons), "n_crops": n_crops, "n_images": len(jobs)}
