"""Benchmark the probe stage against a plain PyTorch loop that keeps every map.

Each method runs in its own subprocess (so peak RSS is its own), on the same model (random weights cost the same
as trained ones) and the same generated images:

    python bench/bench_probe.py --arch resnet50 --images 512 --device cuda --out bench/results/probe_gpu.json
    python bench/bench_probe.py --arch resnet18 --images 128 --device cpu  --out bench/results/probe_cpu.json

``--decode-compare`` instead compares the probe's two decodes (``probe.decode``) on the CPU, in this process:
``host`` (Pillow decodes and preprocesses each image) against ``device`` (torchvision's batched ``decode_jpeg``
and tensor resize, crop and normalisation, here with ``device="cpu"``), through the whole
:func:`sieve.probe.run_probe` on 500 x 375 JPEGs with a model that costs next to nothing (one strided
convolution), no DataLoader workers and one torch thread: the time is what each decode path costs one core:

    python bench/bench_probe.py --decode-compare --images 256 --rounds 5 --out bench/results/probe_decode_cpu.json

The two methods run interleaved for ``--rounds`` rounds (plain, sieve, plain, sieve, ...; at least 3 for a
recorded result) after one uncounted warm-up round each; images/s is reported from the minimum and the median
time (bench/timing.py). Also peak host memory (ru_maxrss) and, on a GPU, peak device memory, plus the memory the
plain loop would need for ImageNet val (50,000 images) by extrapolation.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import MIN_ROUNDS, interleaved, speedup, summary  # noqa: E402


def make_images(root: Path, n: int, size: int = 256) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(
            root / f"{i:05d}.jpg", quality=90
        )


def run_sieve(args: argparse.Namespace, images: Path, out: Path) -> dict:
    import torch

    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import load_model
    from sieve.devices import resolve_device, resolve_dtype
    from sieve.probe import run_probe

    device = resolve_device(args.device)
    model = load_model(
        "bench", {"source": "torchvision", "arch": args.arch}, device, resolve_dtype(args.dtype, device)
    )
    probe = open_image_set("bench", {"kind": "imagefolder", "path": str(images)})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    run_probe(
        model, probe, str(out), top_n=20, batch_size=args.batch_size, num_workers=args.workers, progress=False
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "seconds": dt,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def run_plain(args: argparse.Namespace, images: Path) -> dict:
    """The straightforward loop: ImageFolder-like dataset, float32, keep every layer4 map on the host."""
    import torch
    import torchvision
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    model = torchvision.models.get_model(args.arch).eval().to(device)
    tf = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    files = sorted(images.iterdir())

    class DS(Dataset):
        def __len__(self) -> int:
            return len(files)

        def __getitem__(self, i: int):
            return tf(Image.open(files[i]).convert("RGB"))

    maps: list = []
    model.layer4.register_forward_hook(lambda m, i, o: maps.append(o.float().cpu()))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with torch.no_grad():
        for x in DataLoader(DS(), batch_size=args.batch_size, num_workers=args.workers):
            model(x.to(device))
    allmaps = torch.cat(maps)
    pooled = allmaps.mean((2, 3))
    torch.topk(pooled, min(20, pooled.shape[0]), dim=0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    return {
        "seconds": dt,
        "maps_bytes": allmaps.numel() * 4,
        "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


def cheap_net():
    """A probe model that costs next to nothing (one 16 x 16 stride-16 convolution, a 14 x 14 map at 224),
    with ImageNet's preprocessing: loaded as ``{source: python, factory: "bench_probe:cheap_net"}``."""
    import torch
    from torch import nn

    class CheapNet(nn.Module):
        sieve_penultimate = "layer4"

        def __init__(self) -> None:
            super().__init__()
            self.layer4 = nn.Sequential(nn.Conv2d(3, 16, 16, stride=16), nn.ReLU())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer4(x)

    return CheapNet(), {"input_size": 224, "resize": 256}


def compare_decode(args: argparse.Namespace) -> dict:
    """host against device decode through run_probe on the CPU (see the module docstring)."""
    import torch
    from gpu_suite import write_jpegs  # the GPU suite's probe images: smooth pictures, 500 x 375, quality 90

    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import load_model
    from sieve.probe import run_probe

    torch.set_num_threads(args.threads)
    model = load_model("cheap", {"source": "python", "factory": "bench_probe:cheap_net"})
    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(Path(tmp) / "imgs", args.images)
        probe = open_image_set("bench", {"kind": "imagefolder", "path": str(Path(tmp) / "imgs")})

        def side(decode: str):
            def run() -> dict:
                t0 = time.perf_counter()
                run_probe(
                    model,
                    probe,
                    str(Path(tmp) / f"{decode}.h5"),
                    top_n=20,
                    batch_size=args.batch_size,
                    num_workers=0,
                    progress=False,
                    decode=decode,
                )
                return {"seconds": time.perf_counter() - t0}

            return run

        runs = interleaved({"host": side("host"), "device": side("device")}, rounds=args.rounds, warmup=True)
        acts = {}
        for decode in ("host", "device"):
            with h5py.File(Path(tmp) / f"{decode}.h5") as f:
                acts[decode] = f["activations"][()]
    results = {d: summary(rs, args.images) for d, rs in runs.items()}
    for r in results.values():
        r["ms_per_image_min"] = round(1000 * r["seconds_min"] / args.images, 3)
        r["ms_per_image_median"] = round(1000 * r["seconds_median"] / args.images, 3)
    diff = np.abs(acts["host"] - acts["device"])
    return {
        "what": "run_probe on the CPU, host against device decode (decode_jpeg on the CPU), no workers",
        "images": args.images,
        "image_size": [500, 375],
        "batch_size": args.batch_size,
        "torch_threads": args.threads,
        "rounds": args.rounds,
        "load_average_at_start": LOAD_AT_START,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "host": results["host"],
        "device": results["device"],
        "device_speedup": speedup(results["host"], results["device"]),
        "pooled_max_abs_diff": float(diff.max()),
        "pooled_max_abs": float(np.abs(acts["host"]).max()),
    }


def child(args: argparse.Namespace) -> None:
    images = Path(args.images_dir)
    with tempfile.TemporaryDirectory() as tmp:
        res = (
            run_sieve(args, images, Path(tmp) / "a.h5") if args.child == "sieve" else run_plain(args, images)
        )
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(res))


LOAD_AT_START = round(
    os.getloadavg()[0], 2
)  # other work on the machine (2 shared cores here) slows both sides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--out", default=None)
    ap.add_argument("--decode-compare", action="store_true", help="host against device decode, on the CPU")
    ap.add_argument("--threads", type=int, default=1, help="--decode-compare: torch threads")
    ap.add_argument("--child", choices=["sieve", "plain"], help=argparse.SUPPRESS)
    ap.add_argument("--images-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.decode_compare:
        write_report(compare_decode(args), args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        images = Path(tmp) / "imgs"
        make_images(images, args.images)

        def side(method: str):
            def run() -> dict:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    method,
                    "--images-dir",
                    str(images),
                    "--arch",
                    args.arch,
                    "--batch-size",
                    str(args.batch_size),
                    "--workers",
                    str(args.workers),
                    "--device",
                    args.device,
                    "--dtype",
                    args.dtype,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
                if proc.returncode != 0:
                    raise RuntimeError(f"bench side {method} failed:\n{proc.stderr[-3000:]}")
                return json.loads(proc.stdout.split("RESULT ", 1)[1])

            return run

        runs = interleaved({"plain": side("plain"), "sieve": side("sieve")}, rounds=args.rounds, warmup=True)
    results = {}
    for method, rs in runs.items():
        results[method] = {
            **summary(rs, args.images),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "gpu_peak_mb": rs[-1].get("gpu_peak_mb"),
        }
        if "maps_bytes" in rs[-1]:
            results[method]["maps_bytes"] = rs[-1]["maps_bytes"]
    import torch

    c = {"resnet18": 512, "resnet50": 2048}.get(args.arch, 2048)
    report = {
        "arch": args.arch,
        "rounds": args.rounds,
        "load_average_at_start": LOAD_AT_START,
        "images": args.images,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "plain": results["plain"],
        "sieve": results["sieve"],
        "speedup": speedup(results["plain"], results["sieve"]),
        "imagenet_val_maps_gb_plain": 50000 * c * 49 * 4 / 1e9,
        "imagenet_val_maps_mb_sieve": c * 20 * 49 * 2 / 1e6,
    }
    write_report(report, args.out)


def write_report(report: dict, out: str | None) -> None:
    print(json.dumps(report, indent=2))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
