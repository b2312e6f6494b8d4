"""Where a whole shard's time goes on the CPU bench: ``bench_generate.py``'s shard (the tests' tiny SD pipeline,
32 px, 16 concepts x 4 images, batch 16, thumbnails, the tiny CNN measured), with the shard's phases timed by
wrapping them: generation (the manifest's own generate time), measuring, the writer thread's work (thumbnail
files; each finished concept's prompt and activations; wall and CPU time) and the main thread's waits for that
thread; then the same thumbnail files written alone, and the cost of creating one directory, for comparison.

    python bench/shard_phases.py --out bench/results/shard_phases_cpu.json

A profile, not a comparison: one side, ``--runs`` runs after a warm-up, mean seconds per run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "workflow"), str(REPO / "tests"), str(REPO / "bench")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "shard_phases_cpu.json"))
    args = ap.parse_args()
    load = round(os.getloadavg()[0], 2)
    import bench_generate
    import torch

    import sieve.verify.shard as shard
    from sieve.backends.generators import DiffusersGenerator
    from tinydiffusion import build_tiny_pipeline

    spent: dict[str, float] = collections.defaultdict(float)
    cpu: dict[str, float] = collections.defaultdict(float)

    def timed(owner: Any, name: str, key: str) -> None:
        fn = getattr(owner, name)

        def run(*a: Any, **k: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0
                cpu[key] += time.thread_time() - c0

        setattr(owner, name, run)

    timed(shard, "write_images", "writer_thumbnail_files")
    timed(shard.ShardRecorder, "_finish", "writer_concept_files")
    timed(shard, "measure_images", "measure")
    timed(shard.ShardRecorder, "mark", "main_waits_for_writer")
    timed(shard, "generate_and_measure", "generate_and_measure")
    torch.manual_seed(0)
    pipe = build_tiny_pipeline(0).to("cpu", torch.float32)
    pipe.set_progress_bar_config(disable=True)
    prompts = [f"a photo of concept number {i}" for i in range(16)]
    models = {"tiny": {"source": "python", "factory": "tinymodels:hotspot_cnn", "batch_size": 64}}
    spec = {
        "source": "python",
        "factory": "bench:preloaded",
        "resolution": 32,
        "images_per_concept": 4,
        "batch_size": 16,
        "shards": 1,
        "seed": 0,
        "keep_images": "thumbnails",
        "thumbnail_size": 128,
        "dtype": "float32",
    }
    n_images = len(prompts) * spec["images_per_concept"]
    run = bench_generate.shard_timer(prompts, spec, models, DiffusersGenerator(pipe, 32, 1, 0.0), "cpu")
    run()  # warm-up
    spent.clear()
    cpu.clear()
    total = generate = 0.0
    for _ in range(args.runs):
        r = run()
        total += r["seconds"]
        generate += r["n"] / r["generate_only_per_s"]
    per_run = {k: round(v / args.runs, 4) for k, v in sorted(spent.items())}
    record = {
        "load_average_at_start": load,
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "images_per_run": n_images,
        "seconds_per_run": round(total / args.runs, 4),
        "generate_seconds_per_run": round(generate / args.runs, 4),
        "generate_share": round(generate / total, 3),
        **per_run,
        "writer_seconds_per_run": round(
            per_run["writer_thumbnail_files"] + per_run["writer_concept_files"], 4
        ),
        # the writer thread's CPU time (time.thread_time) in those tasks: work, not waiting
        "writer_cpu_seconds_per_run": round(
            (cpu["writer_thumbnail_files"] + cpu["writer_concept_files"]) / args.runs, 4
        ),
        "thumbnail_file_in_shard_ms": round(per_run["writer_thumbnail_files"] / n_images * 1e3, 3),
        **files_alone(),
        "note": args.note,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(record, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def files_alone(n: int = 64, entries: int = 16, rounds: int = 5) -> dict[str, float]:
    """The shard's thumbnail files written alone, outside a shard (the same 32 px thumbnails, 16 new cache
    entries, in a fresh folder where the bench's caches go), and one directory created there: what the writer's
    work costs when nothing competes with it, best of ``rounds``, in ms."""
    import shutil
    import tempfile

    import numpy as np

    from sieve.verify.cache import CacheEntry, write_images

    arr = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    per_thumb, per_dir = [], []
    for _ in range(rounds):
        root = Path(tempfile.mkdtemp())
        try:
            paths = [CacheEntry(root, "g", f"k{i % entries:06d}").thumb(i) for i in range(n)]
            t0 = time.perf_counter()
            write_images(arr, paths, "thumbnails")
            per_thumb.append((time.perf_counter() - t0) / n)
            t0 = time.perf_counter()
            for i in range(n):
                (root / f"d{i}").mkdir()
            per_dir.append((time.perf_counter() - t0) / n)
        finally:
            shutil.rmtree(root)
    return {
        "thumbnail_file_alone_ms": round(min(per_thumb) * 1e3, 3),
        "mkdir_ms": round(min(per_dir) * 1e3, 3),
    }


if __name__ == "__main__":
    main()
