"""Per-neuron CPU costs, before and after (issue 14's CPU targets): the neuron grids' image encoding and
Hypothesize's naming of clusters from 20,000 concepts.

    python bench/bench_cpu_stages.py --results results --out bench/results/cpu_stages.json

Both read a default run's outputs (``--results``: its ``results/`` folder; the grids and the Hypothesize inputs
of the synthetic world).

- **Grids**: every grid of the run, decoded once, then encoded per side: ``png_optimize`` (PNG with
  ``optimize=True``, the encoding issue 14 measured), ``png_level1`` (plain PNG at zlib level 1, what
  :func:`sieve.report.grids.run_grids` writes), ``jpeg_q90`` (JPEG quality 90, for comparison). Drawing a grid
  (:func:`sieve.report.grids.draw_grid`, from the run's cluster files on flat tiles) is timed as its own side.
  Reported per neuron.
- **Hypothesize**: :func:`sieve.hypothesize.run_hypothesize` on the run's clusters and crops with the run's
  concept set padded to ``--concepts`` concepts (random unit embeddings after the real ones): ``full_sort`` (the
  first k of a stable descending argsort of every score, what it did before) against ``partition``
  (:func:`sieve.hypothesize.top_k_indices`, what it does). The two sides' hypothesis files must be equal byte
  for byte (ties keep concept-set order in both), else the bench fails.

Sides run interleaved, repeated (``--rounds``, at least 3 for a record), reported from the minimum and the
median round (bench/timing.py).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO / "bench"))
from timing import MIN_ROUNDS, interleaved, speedup, summary  # noqa: E402

WORLD = Path("synthetic") / "synthetic"  # the default run's probe/model folder under results/


def encoders() -> dict[str, Callable[[Any], int]]:
    """Encoding of one grid image per side -> its size in bytes."""

    def enc(**kw: Any) -> Callable[[Any], int]:
        def run(img: Any) -> int:
            buf = io.BytesIO()
            img.save(buf, **kw)
            return buf.tell()

        return run

    return {
        "png_optimize": enc(format="PNG", optimize=True),
        "png_level1": enc(format="PNG", compress_level=1),
        "jpeg_q90": enc(format="JPEG", quality=90),
    }


def bench_grids(results: Path, rounds: int) -> dict[str, Any]:
    from PIL import Image

    from sieve.io import read_json
    from sieve.report.grids import draw_grid

    pngs = sorted((results / WORLD / "grids").glob("*.png"))
    if not pngs:
        raise SystemExit(f"no grids under {results / WORLD / 'grids'}: run the default workflow first")
    images = []
    for p in pngs:
        with Image.open(p) as im:
            images.append(im.convert("RGB"))
    docs = [read_json(p) for p in sorted((results / WORLD / "clusters").glob("*.json"))]
    tile = 96
    flat = {int(c["probe_index"]): np.full((tile, tile, 3), 128, np.uint8) for d in docs for c in d["crops"]}
    maps = {int(d["neuron"]): np.random.default_rng(0).random((len(d["crops"]), 7, 7)) for d in docs}
    sizes: dict[str, int] = {}

    def side(name: str, encode: Callable[[Any], int]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            t0 = time.perf_counter()
            sizes[name] = sum(encode(img) for img in images)
            return {"seconds": time.perf_counter() - t0}

        return run

    def draw() -> dict[str, Any]:
        t0 = time.perf_counter()
        for d in docs:
            draw_grid(d, flat, 224, tile, maps=maps[int(d["neuron"])])
        return {"seconds": time.perf_counter() - t0}

    sides = {name: side(name, fn) for name, fn in encoders().items()}
    sides["draw"] = draw
    runs = interleaved(sides, rounds=rounds, warmup=True)
    out: dict[str, Any] = {
        "neurons": len(images),
        "pixels_per_grid_mean": int(np.mean([i.size[0] * i.size[1] for i in images])),
    }
    for name, rs in runs.items():
        s = summary(rs, len(images))
        s["ms_per_neuron_min"] = round(1000 * s["seconds_min"] / len(images), 2)
        s["ms_per_neuron_median"] = round(1000 * s["seconds_median"] / len(images), 2)
        if name in sizes:
            s["bytes_per_grid"] = round(sizes[name] / len(images))
        out[name] = s
    out["speedup_level1_vs_optimize"] = speedup(out["png_optimize"], out["png_level1"])
    out["draw_plus_png_level1_ms_per_neuron_median"] = round(
        out["draw"]["ms_per_neuron_median"] + out["png_level1"]["ms_per_neuron_median"], 2
    )
    return out


def padded_concepts(results: Path, n: int, tmp: Path) -> tuple[Path, Path]:
    """The run's concept set and embeddings, padded to ``n`` concepts with random unit embeddings."""
    import h5py

    src_json, src_h5 = (
        results / "concepts" / "synthetic" / "concepts.json",
        results / "concepts" / "synthetic" / "embeddings.h5",
    )
    data = json.loads(src_json.read_text())
    with h5py.File(src_h5, "r") as f:
        ids = [i.decode() if isinstance(i, bytes) else i for i in f["ids"][()]]
        emb = f["embeddings"][()]
        attrs = dict(f.attrs)
    rng = np.random.default_rng(0)
    extra = rng.standard_normal((max(0, n - len(ids)), emb.shape[1])).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    new_ids = [f"pad{i:06d}" for i in range(len(extra))]
    data["concepts"] = data["concepts"] + [{"id": i, "text": f"padding concept {i}"} for i in new_ids]
    cj, ch = tmp / "concepts.json", tmp / "embeddings.h5"
    cj.write_text(json.dumps(data))
    with h5py.File(ch, "w") as f:
        f["ids"] = np.array(ids + new_ids, dtype=object).astype("S")
        f["embeddings"] = np.concatenate([emb, extra])
        f.attrs.update(attrs)
    return cj, ch


def full_sort(scores: np.ndarray, k: int) -> np.ndarray:
    """What Hypothesize did before: the first k of a stable descending argsort of every score."""
    return np.argsort(-np.asarray(scores), kind="stable")[: max(k, 0)]


def bench_hypothesize(results: Path, n_concepts: int, rounds: int) -> dict[str, Any]:
    import sieve.hypothesize as hyp

    partition = hyp.top_k_indices
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cj, ch = padded_concepts(results, n_concepts, tmp)
        outs = {name: tmp / name for name in ("full_sort", "partition")}

        def side(name: str, topk: Callable[[np.ndarray, int], np.ndarray]) -> Callable[[], dict[str, Any]]:
            def run() -> dict[str, Any]:
                shutil.rmtree(outs[name], ignore_errors=True)
                hyp.top_k_indices = topk
                try:
                    t0 = time.perf_counter()
                    n = hyp.run_hypothesize(
                        str(results / WORLD / "clusters"),
                        str(results / WORLD / "crops" / "crops.h5"),
                        str(cj),
                        str(ch),
                        str(outs[name]),
                    )
                    return {"seconds": time.perf_counter() - t0, "neurons": n}
                finally:
                    hyp.top_k_indices = partition

            return run

        runs = interleaved(
            {"full_sort": side("full_sort", full_sort), "partition": side("partition", partition)},
            rounds=rounds,
            warmup=True,
        )
        files = sorted(p.name for p in outs["partition"].glob("*.json"))
        same = files == sorted(p.name for p in outs["full_sort"].glob("*.json")) and all(
            (outs["partition"] / f).read_bytes() == (outs["full_sort"] / f).read_bytes() for f in files
        )
        if not same:
            raise SystemExit("hypotheses differ between the full sort and the partition")
        n_clusters = sum(len(json.loads((outs["partition"] / f).read_text())["clusters"]) for f in files)
    out: dict[str, Any] = {
        "concepts": n_concepts,
        "neurons": len(files),
        "clusters": n_clusters,
        "outputs_identical": same,
    }
    for name, rs in runs.items():
        out[name] = summary(rs, len(files))
    out["speedup_partition_vs_full_sort"] = speedup(out["full_sort"], out["partition"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "results"), help="a default run's results/ folder")
    ap.add_argument("--concepts", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=MIN_ROUNDS)
    ap.add_argument("--note", default="", help="recorded as is, e.g. that the machine was shared")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu_stages.json"))
    args = ap.parse_args()
    results = Path(args.results)
    record = {
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "note": args.note,
        "grids": bench_grids(results, args.rounds),
        "hypothesize": bench_hypothesize(results, args.concepts, args.rounds),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(record, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
