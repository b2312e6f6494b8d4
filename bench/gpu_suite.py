"""The GPU suite: one command measures every GPU stage of sieve against its FLOP floor (issue 14).

    python bench/gpu_suite.py                         # on a GPU machine: about 5 to 8 minutes, writes
                                                      # bench/results/gpu_suite_<gpu>.json
    python bench/gpu_suite.py --small --device cpu --out /tmp/suite.json   # the tests' small CPU mode

Every network has random weights (cost does not depend on weight values) built from local configs: nothing is
downloaded. Sections, each recorded with images (or crops) per second from the minimum and the median of
``--rounds`` repeated runs (bench/timing.py), the FLOPs per item counted by ``torch.utils.flop_counter`` on the
very module that runs, the GPU's FLOP floor (its dense bf16 peak / FLOPs per item) and the fraction of it
reached:

1. ``probe``: :func:`sieve.probe.run_probe` with ResNet-50 and ViT-B/16 at 224 on JPEG files the suite writes
   itself (500 x 375, ImageNet's typical size), with both decodes interleaved (``by_decode``): ``host``
   (DataLoader workers decode) and ``device`` (workers read bytes, batched ``decode_jpeg`` on the device: nvjpeg
   on a GPU). The arch's own figures are those of ``probe.decode: auto`` (``device`` on a GPU), named by
   ``decode``.
2. ``crop_embedding``: sieve's own crop embedding (:mod:`sieve.crops`) with ``hypothesize.crop.resize: device``
   (crops cut and resized on the device with ``torchvision.ops.roi_align``), embedded by open_clip's ViT-B-16
   (random weights, bf16 autocast): the pipeline's device path timed from decoded uint8 images on the device to
   embeddings, the same phase from JPEG files (``from_jpeg``: DataLoader workers decode, each image goes to the
   device once), and the crop boxes of 2,048 neurons x 20 maps (``boxes``, on ``--workers`` threads); each
   extrapolated to 2,048 neurons x 20 images (41k crops), issue 14's target being 60 s.
3. ``generate``: :func:`sieve.verify.shard.run_shard` (whole shard: generate, thumbnails, ResNet-50 measured in
   the same process, cache writes) on SDXL-Turbo's architecture at 512 px, 1 step, bf16, at batch sizes 8 to
   64, with ``generator.channels_last`` as a run sets it (``--channels-last``, default ``auto``: on on a GPU;
   ``speed`` records what was applied); ``keep_images: full`` against thumbnails and ``generator.compile`` off
   and on (the generator's own option, which compiles the UNet and the VAE decoder; ``--compile-backend``,
   ``--compile-mode``), interleaved at batch 16; the shard's own generate-only rate beside each. Then SDXL base (the same UNet and VAE architecture: Turbo is distilled from it) at 1024 px,
   ``--base-steps`` steps, guidance 5.

``--budget-s`` bounds the whole run: a section that would start after it is recorded as skipped. The peak is
taken from :data:`PEAK_BF16_TFLOPS` by the GPU's name, or ``--peak-tflops``; for a GPU in neither, the floor and
the fraction are recorded as unknown, never guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
for sub in ("tests", "workflow", "bench"):
    sys.path.insert(0, str(REPO / sub))
from timing import MIN_ROUNDS, interleaved, speedup, summary  # noqa: E402

# Dense bf16 tensor-core peaks from the vendors' data sheets (TFLOP/s, without sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` (torch's flop counter: 2 per multiply-add of matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def floor(per_item_flops: float, peak: float | None, rate: float) -> dict[str, Any]:
    """The FLOP floor (items/s at the peak) and the fraction of it that ``rate`` reaches."""
    if not peak or per_item_flops <= 0:
        return {"flops_per_item": per_item_flops, "floor_per_s": None, "fraction_of_floor": None}
    top = peak * 1e12 / per_item_flops
    return {
        "flops_per_item": per_item_flops,
        "floor_per_s": round(top, 1),
        "fraction_of_floor": round(rate / top, 4),
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------------- probe


def write_jpegs(root: Path, n: int, size: tuple[int, int] = (500, 375)) -> None:
    """Smooth random pictures (JPEG, quality 90): they decode like photographs, not like noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(root / f"{i:05d}.jpg", quality=90)


DECODE_SIDES = ("host", "device")


def bench_probe(args: argparse.Namespace, device: torch.device, peak: float | None, tmp: Path) -> dict:
    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import load_model
    from sieve.probe import resolve_decode, run_probe

    images = tmp / "probe"
    write_jpegs(images, args.probe_images)
    probe = open_image_set("bench", {"kind": "imagefolder", "path": str(images)})
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    out: dict[str, Any] = {
        "images": args.probe_images,
        "batch_size": args.probe_batch,
        "workers": args.workers,
    }
    for arch in args.probe_archs:
        model = load_model("bench", {"source": "torchvision", "arch": arch, "weights": None}, device, dtype)
        x = torch.zeros(1, 3, 224, 224, device=device, dtype=dtype)
        with torch.inference_mode():
            flops = count_flops(lambda m=model, x=x: m.activations(x, maps=False))

        def side(decode: str, model: Any = model) -> Callable[[], dict]:
            def run() -> dict:
                t0 = time.perf_counter()
                run_probe(
                    model,
                    probe,
                    str(tmp / "probe.h5"),
                    top_n=20,
                    batch_size=args.probe_batch,
                    num_workers=args.workers,
                    progress=False,
                    decode=decode,
                )
                sync(device)
                return {"seconds": time.perf_counter() - t0}

            return run

        # both decodes, interleaved; the arch's own figures are those of `auto` (what a default run does)
        runs = interleaved({d: side(d) for d in DECODE_SIDES}, rounds=args.rounds, warmup=True)
        by_decode = {d: summary(runs[d], args.probe_images) for d in DECODE_SIDES}
        auto = resolve_decode("auto", device)
        s = by_decode[auto]
        out[arch] = {
            **s,
            **floor(flops, peak, s["per_s_max"]),
            "decode": auto,
            "by_decode": by_decode,
            "device_decode_speedup": speedup(by_decode["host"], by_decode["device"]),
        }
        del model
    return out


# ------------------------------------------------------------------------------------------- crop embedding


def crop_embedder(args: argparse.Namespace, device: torch.device, tmp: Path) -> Any:
    """The crop embedder, an open_clip model with random weights: ViT-B-16 (CLIP ViT-B/16's size), or the tests'
    tiny CLIP in the small mode."""
    from sieve.backends.embedders import load_embedder, load_open_clip

    if args.small:
        from tinyclip import make_tiny_clip

        return load_embedder(make_tiny_clip(tmp / "tinyclip"), device)
    return load_open_clip("ViT-B-16", None, device=device)


def crop_top_images(n_neurons: int, k: int, n_images: int, map_side: int = 14, seed: int = 0) -> Any:
    """A :class:`sieve.crops.TopImages` of ``n_neurons`` x ``k`` top images drawn from ``n_images`` images, with
    random non-negative maps (a few blobs each) at the model's 224 input."""
    from sieve.backends.models import Preprocess
    from sieve.crops import TopImages

    rng = np.random.default_rng(seed)
    probe_index = np.stack([rng.choice(n_images, size=k, replace=False) for _ in range(n_neurons)])
    maps = np.maximum(rng.normal(size=(n_neurons, k, map_side, map_side)), 0).astype(np.float32) ** 2
    zeros = np.zeros((n_neurons, k))
    return TopImages(Preprocess(), np.arange(n_neurons), k, probe_index, zeros, probe_index, maps, {})


def bench_crops(args: argparse.Namespace, device: torch.device, peak: float | None, tmp: Path) -> dict:
    """sieve's own crop embedding with ``hypothesize.crop.resize: device`` (:mod:`sieve.crops`): the boxes
    (:func:`~sieve.crops.crop_boxes`), the device path from decoded images on the device to embeddings
    (:func:`~sieve.crops.embed_boxes_on_device`), and the whole phase from JPEG files
    (:func:`~sieve.crops.embed_crop_jobs`: DataLoader workers decode, images go to the device once)."""
    from sieve.backends.imagesets import open_image_set
    from sieve.crops import crop_boxes, crop_jobs, embed_boxes_on_device, embed_crop_jobs

    n_img, per_img = args.crop_images, args.crops_per_image
    embedder = crop_embedder(args, device, tmp)
    side = embedder.image_size
    n = n_img * per_img
    top = crop_top_images(n_img, per_img, n_img)  # as many neurons as images: every image has per_img crops
    boxes = crop_boxes(top, {}, threads=max(1, args.workers))
    index = torch.from_numpy(top.probe_index.reshape(-1))
    flat = torch.from_numpy(boxes.reshape(-1, 4))
    g = torch.Generator("cpu").manual_seed(0)
    images = torch.randint(0, 256, (n_img, 3, 224, 224), generator=g, dtype=torch.uint8).to(device)
    with torch.inference_mode():
        x = torch.zeros(1, 3, side, side, device=device)
        flops = count_flops(lambda: embedder.encode_images(x))

    def on_device() -> dict:
        t0 = time.perf_counter()
        embed_boxes_on_device(images, index, flat, embedder, side, args.crop_batch)
        sync(device)
        return {"seconds": time.perf_counter() - t0}

    runs = interleaved({"device_path": on_device}, rounds=args.rounds, warmup=True)
    s = summary(runs["device_path"], n)
    out: dict[str, Any] = {
        "crops": n,
        "side": side,
        "embedder": embedder.name,
        "batch_size": args.crop_batch,
        **s,
        **floor(flops, peak, s["per_s_max"]),
        "seconds_for_41k_crops_median": round(2048 * 20 / s["per_s_median"], 1),
    }

    write_jpegs(tmp / "crops", n_img)
    probe = open_image_set("bench", {"kind": "imagefolder", "path": str(tmp / "crops")})
    jobs = crop_jobs(top.probe_index, boxes)

    def from_jpeg() -> dict:
        t0 = time.perf_counter()
        embed_crop_jobs(
            jobs, top, probe, embedder, side, args.crop_batch, args.workers, resize="device", device=device
        )
        sync(device)
        return {"seconds": time.perf_counter() - t0}

    runs = interleaved({"from_jpeg": from_jpeg}, rounds=args.rounds, warmup=True)
    s = summary(runs["from_jpeg"], n)
    out["from_jpeg"] = {
        "images": n_img,
        "workers": args.workers,
        **s,
        "seconds_for_41k_crops_median": round(2048 * 20 / s["per_s_median"], 1),
    }

    big = crop_top_images(args.box_neurons, 20, 50_000, seed=1)

    def box_run() -> dict:
        t0 = time.perf_counter()
        crop_boxes(big, {}, threads=max(1, args.workers))
        return {"seconds": time.perf_counter() - t0}

    runs = interleaved({"boxes": box_run}, rounds=args.rounds)
    s = summary(runs["boxes"], args.box_neurons * 20)
    out["boxes"] = {
        "neurons": args.box_neurons,
        "crops": args.box_neurons * 20,
        "threads": max(1, args.workers),
        **s,
        "seconds_for_41k_crops_median": round(2048 * 20 / s["per_s_median"], 1),
    }
    return out


# ------------------------------------------------------------------------------------------------- generate


def generator(pipe: Any, res: int, steps: int, guidance: float, **speed: Any) -> Any:
    """The pipeline behind sieve's Generator contract, built by the same function as a loaded pipeline
    (:func:`sieve.backends.generators.pipeline_generator`), which applies the speed settings ``speed``
    (``generator.channels_last``, ``compile``, ``compile_backend``, ``compile_mode``) as a run would."""
    from sieve.backends.generators import pipeline_generator

    spec = {"source": "python", "resolution": res, "steps": steps, "guidance_scale": guidance, **speed}
    return pipeline_generator(pipe, spec, name=type(pipe).__name__)


def twin_pipeline(pipe: Any) -> Any:
    """A second pipeline over the same weights, to compile without touching ``pipe``: every component shared
    but the VAE, copied (compiling replaces its decoder, in place)."""
    import copy

    twin = type(pipe)(**{**pipe.components, "vae": copy.deepcopy(pipe.vae)})
    twin.set_progress_bar_config(disable=True)
    return twin


def shard_run(
    gen: Any, device: torch.device, n_images: int, batch: int, keep: str = "thumbnails"
) -> Callable[[], dict]:
    """One whole shard of generator ``gen`` in a fresh cache (everything generated), ResNet-50 (small: the
    tests' CNN) measured."""
    from bench_generate import shard_timer

    per_concept = 4
    n_concepts = max(1, n_images // per_concept)
    if device.type == "cuda":
        models = {"rn50": {"source": "torchvision", "arch": "resnet50", "weights": None, "batch_size": 64}}
    else:
        models = {"tiny": {"source": "python", "factory": "tinymodels:hotspot_cnn", "batch_size": 64}}
    spec = {
        "source": "python",
        "factory": "bench:preloaded",
        "resolution": gen.resolution,
        "steps": gen.steps,
        "guidance_scale": gen.guidance_scale,
        "images_per_concept": per_concept,
        "batch_size": batch,
        "shards": 1,
        "seed": 0,
        "keep_images": keep,
        "dtype": "bfloat16" if device.type == "cuda" else "float32",
    }
    prompts = [f"a photo of concept {i}" for i in range(n_concepts)]
    return shard_timer(prompts, spec, models, gen, str(device), texts=[str(i) for i in range(n_concepts)])


def gen_flops(gen: Any) -> float:
    """FLOPs of one image of ``gen`` (an eager generator: the counter sees every operation)."""
    return count_flops(lambda: gen.generate(["a photo"], [0]))


def gen_summary(runs: list[dict], n: int, flops: float, peak: float | None) -> dict:
    s = summary(runs, n)
    rates = sorted(r["generate_only_per_s"] for r in runs)
    med = rates[len(rates) // 2]
    return {
        **s,
        "generate_only_per_s_median": med,
        "whole_shard_share_of_generate_only_median": round(s["per_s_median"] / med, 3) if med else None,
        **floor(flops, peak, s["per_s_max"]),
    }


def bench_generate(
    args: argparse.Namespace, device: torch.device, peak: float | None, deadline: float
) -> dict:
    from bench_generate import sdxl_pipeline

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    scale = "sdxl-tiny" if args.small else "sdxl"
    t0 = time.perf_counter()
    pipe = sdxl_pipeline(scale, dtype, str(device))
    pipe.set_progress_bar_config(disable=True)
    out: dict[str, Any] = {"architecture": scale, "load_s": round(time.perf_counter() - t0, 1)}
    res = args.turbo_resolution
    # generator.channels_last as a run sets it (auto: on CUDA only), applied once to the pipeline
    turbo = generator(pipe, res, 1, 0.0, channels_last=args.channels_last)
    out["speed"] = {"channels_last": args.channels_last, "applied": turbo.speed}
    flops = gen_flops(turbo)
    out["turbo"] = {"resolution": res, "steps": 1, "guidance_scale": 0.0, "batch_sizes": {}}
    for b in args.batch_sizes:
        if time.perf_counter() > deadline:
            out["turbo"]["batch_sizes"][str(b)] = "skipped: over --budget-s"
            continue
        n = max(b * 2, args.gen_images)
        run = shard_run(turbo, device, n, b)
        run()  # warm-up: kernels, allocator
        runs = interleaved({"shard": run}, rounds=args.rounds)["shard"]
        out["turbo"]["batch_sizes"][str(b)] = gen_summary(runs, runs[0]["n"], flops, peak)
    if time.perf_counter() < deadline:  # keep_images: full (a PNG per image) against thumbnails, interleaved
        b = args.compile_batch
        n = max(2 * b, args.gen_images)
        sides = {k: shard_run(turbo, device, n, b, keep=k) for k in ("thumbnails", "full")}
        runs = interleaved(sides, rounds=args.rounds, warmup=True)
        thumbs, full = (gen_summary(runs[k], runs[k][0]["n"], flops, peak) for k in ("thumbnails", "full"))
        out["keep_images"] = {
            "batch_size": b,
            "thumbnails": thumbs,
            "full": full,
            "full_share_of_thumbnails_median": round(full["per_s_median"] / thumbs["per_s_median"], 3),
        }
    else:
        out["keep_images"] = "skipped: over --budget-s"
    if args.compile and time.perf_counter() < deadline:
        # generator.compile: true, as a run loads it (the generator's own option, on a twin pipeline over the
        # same weights), against the eager generator, interleaved; the first compiled shard compiles
        b = args.compile_batch
        n = max(2 * b, args.gen_images)
        t1 = time.perf_counter()
        compiled = generator(
            twin_pipeline(pipe),
            res,
            1,
            0.0,
            channels_last=args.channels_last,
            compile=True,
            compile_backend=args.compile_backend,
            compile_mode=args.compile_mode,
        )
        sides = {"off": shard_run(turbo, device, n, b), "on": shard_run(compiled, device, n, b)}
        sides["on"]()  # compiles (at the first batch, and again for a new batch shape)
        compile_s = time.perf_counter() - t1
        runs = interleaved(sides, rounds=args.rounds, warmup=True)
        off, on = (gen_summary(runs[k], runs[k][0]["n"], flops, peak) for k in ("off", "on"))
        out["compile"] = {
            "backend": args.compile_backend,
            "mode": args.compile_mode,
            "applied": compiled.speed,
            "batch_size": b,
            "compile_seconds": round(compile_s, 1),
            "off": off,
            "on": on,
            "speedup": speedup(off, on),
        }
    elif args.compile:
        out["compile"] = "skipped: over --budget-s"
    if time.perf_counter() < deadline:
        res_b, steps = args.base_resolution, args.base_steps
        base = generator(pipe, res_b, steps, 5.0, channels_last=args.channels_last)
        flops_b = gen_flops(base)
        run = shard_run(base, device, args.base_images, args.base_batch)
        runs = interleaved({"shard": run}, rounds=args.rounds, warmup=True)["shard"]
        out["base"] = {
            "resolution": res_b,
            "steps": steps,
            "guidance_scale": 5.0,
            "batch_size": args.base_batch,
            **gen_summary(runs, runs[0]["n"], flops_b, peak),
        }
    else:
        out["base"] = "skipped: over --budget-s"
    return out


# ----------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="tiny sizes, for the tests on a CPU")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--budget-s", type=float, default=420.0, help="start no section after this many seconds")
    ap.add_argument(
        "--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table"
    )
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1))
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument(
        "--compile-backend", default="inductor", help="torch.compile's backend (the tests use 'eager': fast)"
    )
    ap.add_argument(
        "--compile-mode",
        default="default",
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="generator.compile_mode of the compiled side",
    )
    ap.add_argument(
        "--channels-last",
        default="auto",
        choices=["auto", "true", "false"],
        help="generator.channels_last of every generate section (auto: on CUDA only, as in a run)",
    )
    ap.add_argument("--out", default=None, help="default: bench/results/gpu_suite_<gpu>.json")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    args.channels_last = {"true": True, "false": False}.get(args.channels_last, args.channels_last)
    small = args.small
    args.probe_archs = ["resnet18"] if small else ["resnet50", "vit_b_16"]
    args.probe_images = 8 if small else 4096
    args.probe_batch = 4 if small else 256
    args.crop_images, args.crops_per_image = (4, 2) if small else (512, 20)
    args.crop_batch = 8 if small else 512
    args.box_neurons = 4 if small else 2048
    args.batch_sizes = [2, 4] if small else [8, 16, 32, 64]
    args.gen_images = 8 if small else 128
    args.turbo_resolution = 32 if small else 512
    args.compile_batch = 2 if small else 16
    args.base_resolution, args.base_steps = (32, 2) if small else (1024, 30)
    args.base_images, args.base_batch = (4, 2) if small else (8, 8)
    if small:
        args.workers = 0
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here (use --small --device cpu for the test mode)")
    torch.manual_seed(0)
    name = gpu_name(device)
    peak = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else None
    record: dict[str, Any] = {
        "gpu": name,
        "device": str(device),
        "small": args.small,
        "peak_bf16_tflops": peak,
        "peak_source": "--peak-tflops" if args.peak_tflops else ("table" if peak else None),
        "rounds": args.rounds,
        "torch": torch.__version__,
        "note": args.note,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    with tempfile.TemporaryDirectory() as tmpdir:
        record["probe"] = bench_probe(args, device, peak, Path(tmpdir))
    with tempfile.TemporaryDirectory() as tmpdir:
        record["crop_embedding"] = (
            bench_crops(args, device, peak, Path(tmpdir))
            if time.perf_counter() < deadline
            else "skipped: over --budget-s"
        )
    record["generate"] = (
        bench_generate(args, device, peak, deadline)
        if time.perf_counter() < deadline
        else "skipped: over --budget-s"
    )
    record["wall_s"] = round(time.perf_counter() - t_start, 1)
    out = (
        Path(args.out)
        if args.out
        else REPO / "bench" / "results" / f"gpu_suite_{name.replace(' ', '_')}.json"
    )
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
