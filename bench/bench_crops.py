"""Crop embedding on the CPU, host against device path (issue 14), and the crop boxes before and after.

    python bench/bench_crops.py --out bench/results/crops_cpu.json
    python bench/bench_crops.py --small --out /tmp/crops.json     # the tests' small mode

Both parts run :mod:`sieve.crops` itself on JPEG files the bench writes (500 x 375, as the GPU suite's), with
top images drawn at random for ``--images`` neurons x ``--crops-per-image`` top images among ``--images`` images
(so an image has that many crops on average) and random non-negative 14 x 14 maps:

- **Embed** (:func:`sieve.crops.embed_crop_jobs`, phase 4, from the files to the embeddings): ``host`` (the
  workers cut and resize every crop, antialiased bilinear) against ``device`` (``hypothesize.crop.resize:
  device`` with ``device=cpu``: uint8 images, every crop of an image cut and resized at once by ``roi_align``).
  The embedder is an open_clip model with random weights at the usual 224 side but a single small layer
  (``--embedder-width``), so that what the two sides differ in, cutting and resizing, is not hidden by a large
  network on two CPU cores. The smallest per-crop cosine between the two sides' embeddings is recorded.
- **Boxes** (:func:`sieve.crops.crop_boxes`, phase 2, ``method: region``): ``before`` (each region's bounding box
  from every pixel's coordinates, ``np.nonzero``, one crop after another, as sieve did), ``after_1_thread``
  (the bounding box from row and column projections) and ``after_threads`` (the same on ``--threads`` threads,
  default the CPU count). All sides must give the same boxes, else the bench fails.

Sides run interleaved, repeated (``--rounds``, at least 3 for a record), reported from the minimum and the median
round (bench/timing.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))
from gpu_suite import crop_top_images, write_jpegs  # noqa: E402
from timing import MIN_ROUNDS, interleaved, speedup, summary  # noqa: E402


def small_clip(folder: Path, width: int) -> Any:
    """An open_clip model with random weights at side 224: one transformer layer of ``width``, 32-pixel patches."""
    from sieve.backends.embedders import load_open_clip

    cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": width, "patch_size": 32, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "arch.json").write_text(json.dumps(cfg), encoding="utf-8")
    return load_open_clip("bench-crop-clip", None, model_config=str(folder / "arch.json"))


def bench_embed(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from sieve.backends.imagesets import open_image_set
    from sieve.crops import crop_boxes, crop_jobs, embed_crop_jobs

    embedder = small_clip(tmp / "clip", args.embedder_width)
    side = embedder.image_size
    top = crop_top_images(args.images, args.crops_per_image, args.images)
    boxes = crop_boxes(top, {})
    jobs = crop_jobs(top.probe_index, boxes)
    write_jpegs(tmp / "images", args.images)
    probe = open_image_set("bench", {"kind": "imagefolder", "path": str(tmp / "images")})
    emb: dict[str, np.ndarray] = {}

    def side_run(resize: str):
        def run() -> dict:
            t0 = time.perf_counter()
            emb[resize], _ = embed_crop_jobs(
                jobs, top, probe, embedder, side, args.batch_size, args.workers, resize=resize, device="cpu"
            )
            return {"seconds": time.perf_counter() - t0}

        return run

    runs = interleaved(
        {"host": side_run("host"), "device": side_run("device")}, rounds=args.rounds, warmup=True
    )
    n = int(top.probe_index.size)
    out: dict[str, Any] = {
        "crops": n,
        "images": len(jobs),
        "side": side,
        "embedder": f"{embedder.name} (1 layer, width {args.embedder_width}, patch 32)",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "min_cosine_device_vs_host": round(
            float(np.einsum("skd,skd->sk", emb["host"], emb["device"]).min()), 5
        ),
    }
    for name, rs in runs.items():
        out[name] = summary(rs, n)
    out["speedup_device_vs_host"] = speedup(out["host"], out["device"])
    return out


def boxes_before(top: Any) -> np.ndarray:
    """``method: region`` as sieve computed it before: the region's pixel coordinates, one crop at a time."""
    from scipy import ndimage

    from sieve.crops import _fit_square, upsample_map

    size = top.pre.input_size
    out = np.zeros((len(top.neurons), top.k, 4), dtype=np.int32)
    for s in range(len(top.neurons)):
        for r, up in enumerate(upsample_map(top.maps[s], size)):
            up = np.asarray(up, dtype=np.float64)
            lo, hi = float(up.min()), float(up.max())
            if hi - lo <= 1e-12 * max(1.0, abs(hi)):
                out[s, r] = (0, 0, size, size)
                continue
            py, px = np.unravel_index(int(np.argmax(up)), up.shape)
            mask = up >= 0.5 * hi if hi > 0 else (up - lo) / (hi - lo) >= 0.5
            labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
            ys, xs = np.nonzero(labels == labels[py, px])
            x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
            side = max(x1 - x0, y1 - y0, int(np.ceil(0.25 * size)))
            out[s, r] = _fit_square((x0 + x1) / 2, (y0 + y1) / 2, side, size)
    return out


def bench_boxes(args: argparse.Namespace) -> dict[str, Any]:
    from sieve.crops import crop_boxes

    top = crop_top_images(args.box_neurons, 20, 50_000, seed=1)
    got: dict[str, np.ndarray] = {}

    def timed(name: str, fn: Any):
        def run() -> dict:
            t0 = time.perf_counter()
            got[name] = fn()
            return {"seconds": time.perf_counter() - t0}

        return run

    sides = {
        "before": timed("before", lambda: boxes_before(top)),
        "after_1_thread": timed("after_1_thread", lambda: crop_boxes(top, {}, threads=1)),
        "after_threads": timed("after_threads", lambda: crop_boxes(top, {}, threads=args.threads)),
    }
    runs = interleaved(sides, rounds=args.rounds, warmup=True)
    if not all(np.array_equal(got["before"], b) for b in got.values()):
        raise SystemExit("crop boxes differ between the sides")
    n = args.box_neurons * 20
    out: dict[str, Any] = {"crops": n, "map_side": 14, "input_size": 224, "threads": args.threads}
    for name, rs in runs.items():
        out[name] = {**summary(rs, n), "ms_per_crop_min": round(1000 * min(r["seconds"] for r in rs) / n, 4)}
    out["speedup_after_1_thread_vs_before"] = speedup(out["before"], out["after_1_thread"])
    out["speedup_after_threads_vs_before"] = speedup(out["before"], out["after_threads"])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="tiny sizes, for the tests")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--crops-per-image", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--embedder-width", type=int, default=64)
    ap.add_argument("--box-neurons", type=int, default=256)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--note", default="", help="recorded as is, e.g. that the machine was shared")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "crops_cpu.json"))
    args = ap.parse_args(argv)
    if args.small:
        args.images, args.crops_per_image, args.batch_size, args.box_neurons = 6, 3, 8, 3
    import torch

    record: dict[str, Any] = {
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "small": args.small,
        "note": args.note,
    }
    with tempfile.TemporaryDirectory() as tmp:
        record["embed"] = bench_embed(args, Path(tmp))
    record["boxes"] = bench_boxes(args)
    record["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(json.dumps(record, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


if __name__ == "__main__":
    main()
