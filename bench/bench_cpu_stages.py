"""Per-neuron CPU costs, before and after (issue 14's CPU targets): the neuron grids (drawing and encoding) and
Hypothesize's naming of clusters from 20,000 concepts.

    python bench/bench_cpu_stages.py --results results --out bench/results/cpu_stages.json

Both read a default run's outputs (``--results``: its ``results/`` folder: the cluster files, crops, activations
and concept set of the synthetic world; the probe images are re-rendered from ``config.yaml``'s probe spec).

- **Grids**: every neuron of the run, with its real top images (thumbnails loaded once, outside the timing) and
  its real activation maps. ``draw`` is :func:`sieve.report.grids.draw_grid` (at its default tile,
  :data:`~sieve.report.grids.GRID_TILE`; composed labels forgotten before each round, so every label is
  composed as in a fresh job), ``draw_jpeg`` draws and encodes each grid (JPEG quality 90, what
  :func:`~sieve.report.grids.run_grids` does per neuron). ``before_draw`` and ``before_draw_jpeg`` are the same for
  the previous implementation, ``grids.py`` as of ``--before`` (a git revision; Pillow drawing per tile, 96 px
  tiles, 3-byte thumbnails; the job imported torch), loaded from git. ``jpeg_q90``, ``png_level1`` and
  ``png_optimize`` encode the new grids (already drawn) per format, for the choice of format. Reported per
  neuron. ``job`` is :func:`~sieve.report.grids.run_grids` itself (thumbnails loaded in the job's thread as the
  default run's rule runs it, drawn, encoded and written) over the run's neurons and over ``--replicas`` copies of each
  (other neuron ids, top images shifted through the whole probe set), per neuron; its import time is not in it
  (bench/import_share.py measures imports); ``job.jpeg`` runs the copies' grids over a folder of 500 x 375 JPEG
  files under ImageNet's preprocessing, ``full`` (each file decoded in full, as before) against ``reduced`` (at
  the DCT scale the tile allows, what the job does), both in the job's thread, and ``reduced_2_threads`` (2
  threads loading and drawing: the rule's setting for a probe without ``num_workers: 0``). Every grid side
  records wall time and this process's CPU
  time.
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
import statistics
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
JPEG_SIZE = (500, 375)  # ImageNet's most common image size (width, height)


def encoders() -> dict[str, Callable[[Any], int]]:
    """Encoding of one grid image per side -> its size in bytes."""

    def enc(**kw: Any) -> Callable[[Any], int]:
        def run(img: Any) -> int:
            buf = io.BytesIO()
            img.save(buf, **kw)
            return buf.tell()

        return run

    return {
        "jpeg_q90": enc(format="JPEG", quality=90),
        "png_level1": enc(format="PNG", compress_level=1),
        "png_optimize": enc(format="PNG", optimize=True),
    }


def grids_before(rev: str) -> Any:
    """``workflow/sieve/report/grids.py`` at git revision ``rev``, imported as ``sieve.report._grids_before`` (its
    relative imports resolve in this checkout's package)."""
    import importlib.util
    import subprocess

    src = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{rev}:workflow/sieve/report/grids.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="grids_before_")) / "grids_before.py"
    path.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("sieve.report._grids_before", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def default_probe() -> Any:
    """The default run's probe set, from config.yaml (the synthetic world's images, rendered on demand)."""
    import yaml

    from sieve.backends.imagesets import open_image_set

    cfg = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    name = WORLD.parts[1]
    return open_image_set(name, dict(cfg["probes"][name]))


def replicate_run(results: Path, replicas: int, n_images: int, tmp: Path) -> tuple[Path, Path]:
    """The run's cluster files ``replicas`` times (neuron ids offset by the number of neurons, top images shifted
    by 37 x the copy through the probe set) with an activations file holding each copy's maps."""
    import h5py

    from sieve.io import read_json

    docs = [read_json(p) for p in sorted((results / WORLD / "clusters").glob("*.json"))]
    with h5py.File(results / WORLD / "activations.h5", "r") as f:
        maps = f["topk/maps"][()]
    out = tmp / "clusters"
    out.mkdir()
    n = maps.shape[0]
    big = np.zeros((n * replicas, *maps.shape[1:]), maps.dtype)
    for j in range(replicas):
        big[j * n : (j + 1) * n] = maps
        for d in docs:
            c = json.loads(json.dumps(d))
            c["neuron"] = int(d["neuron"]) + j * n
            for crop in c["crops"]:
                crop["probe_index"] = (int(crop["probe_index"]) + 37 * j) % n_images
            (out / f"{c['neuron']}.json").write_text(json.dumps(c))
    with h5py.File(tmp / "activations.h5", "w") as f:
        f["topk/maps"] = big
    return out, tmp / "activations.h5"


def per_neuron(runs: list[dict[str, Any]], neurons: int) -> dict[str, Any]:
    """summary() of a side's rounds, plus ms per neuron (min, median) of wall time and of this process's CPU time
    (user + system: less sensitive to other sessions on shared cores, though not immune)."""
    s = summary(runs, neurons)
    cpu = [float(r["cpu_seconds"]) for r in runs]
    s["ms_per_neuron_min"] = round(1000 * s["seconds_min"] / neurons, 2)
    s["ms_per_neuron_median"] = round(1000 * s["seconds_median"] / neurons, 2)
    s["cpu_ms_per_neuron_min"] = round(1000 * min(cpu) / neurons, 2)
    s["cpu_ms_per_neuron_median"] = round(1000 * statistics.median(cpu) / neurons, 2)
    return s


def bench_grids(results: Path, rounds: int, before: str, replicas: int) -> dict[str, Any]:
    from sieve.backends.preprocess import Preprocess
    from sieve.io import read_json
    from sieve.report import grids

    old = grids_before(before)
    docs = [read_json(p) for p in sorted((results / WORLD / "clusters").glob("*.json"))]
    if not docs:
        raise SystemExit(
            f"no cluster files under {results / WORLD / 'clusters'}: run the default workflow first"
        )
    crops_h5, acts_h5 = results / WORLD / "crops" / "crops.h5", results / WORLD / "activations.h5"
    probe = default_probe()
    import h5py

    with h5py.File(crops_h5, "r") as f:
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
    indices = sorted({int(c["probe_index"]) for d in docs for c in d["crops"]})
    thumbs = grids.load_thumbnails(probe, pre, indices, grids.GRID_TILE)
    old_tile = 96
    old_thumbs = {i: np.asarray(pre.view(probe.load(i), size=old_tile)) for i in indices}
    maps = grids.read_top_maps(str(acts_h5), [int(d["neuron"]) for d in docs])
    drawn = [  # as RGB: PNG has no RGBX mode
        grids.draw_grid(d, thumbs, pre.input_size, maps=maps[int(d["neuron"])]).convert("RGB") for d in docs
    ]
    sizes: dict[str, int] = {}

    def timed(fn: Callable[[], Any]) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}

        return run

    def draw(encode: bool) -> Callable[[], None]:
        def run() -> None:
            grids.clear_text_cache()
            n = 0
            for d in docs:
                img = grids.draw_grid(d, thumbs, pre.input_size, maps=maps[int(d["neuron"])])
                if encode:
                    buf = io.BytesIO()
                    grids.encode_grid(img, buf)
                    n += buf.tell()
            if encode:
                sizes["draw_jpeg"] = n

        return run

    def draw_before(encode: bool) -> Callable[[], None]:
        def run() -> None:
            n = 0
            for d in docs:
                img = old.draw_grid(d, old_thumbs, pre.input_size, old_tile, maps=maps[int(d["neuron"])])
                if encode:
                    buf = io.BytesIO()
                    img.save(buf, format="JPEG", quality=90)
                    n += buf.tell()
            if encode:
                sizes["before_draw_jpeg"] = n

        return run

    def encode(name: str, fn: Callable[[Any], int]) -> Callable[[], None]:
        def run() -> None:
            sizes[name] = sum(fn(img) for img in drawn)

        return run

    sides = {
        "before_draw": timed(draw_before(False)),
        "before_draw_jpeg": timed(draw_before(True)),
        "draw": timed(draw(False)),
        "draw_jpeg": timed(draw(True)),
    }
    sides.update({name: timed(encode(name, fn)) for name, fn in encoders().items()})
    runs = interleaved(sides, rounds=rounds, warmup=True)
    out: dict[str, Any] = {
        "neurons": len(docs),
        "tile": grids.GRID_TILE,
        "tile_before": old_tile,
        "before": before,
        "pixels_per_grid_mean": int(np.mean([i.size[0] * i.size[1] for i in drawn])),
    }
    for name, rs in runs.items():
        s = per_neuron(rs, len(docs))
        if name in sizes:
            s["bytes_per_grid"] = round(sizes[name] / len(docs))
        out[name] = s
    out["speedup_draw_jpeg_vs_before"] = speedup(out["before_draw_jpeg"], out["draw_jpeg"])
    out["job"] = bench_grids_job(results, probe, rounds, replicas)
    return out


def grids_job_side(
    counts: dict[str, int],
    key: str,
    out: Path,
    clusters: str,
    crops_h5: str,
    probe: Any,
    activations_h5: str,
    reduced: bool = True,
    workers: int = 0,
) -> Callable[[], dict[str, Any]]:
    """One timed side: :func:`~sieve.report.grids.run_grids` into a fresh ``out`` (composed labels forgotten
    first), in the job's own thread or with ``workers`` threads, its grid count stored in ``counts[key]``."""

    def run() -> dict[str, Any]:
        from sieve.report import grids

        grids.clear_text_cache()
        shutil.rmtree(out, ignore_errors=True)
        t0, c0 = time.perf_counter(), time.process_time()
        counts[key] = grids.run_grids(
            clusters,
            crops_h5,
            probe,
            str(out),
            num_workers=workers,
            activations_h5=activations_h5,
            reduced=reduced,
        )
        return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}

    return run


def bench_grids_job(results: Path, probe: Any, rounds: int, replicas: int) -> dict[str, Any]:
    """run_grids as the default run's rule runs it (config.yaml's ``num_workers: 0``: thumbnails loaded in the job's
    own thread), on the run's neurons and on ``replicas`` copies."""

    crops_h5 = str(results / WORLD / "crops" / "crops.h5")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        clusters, acts = replicate_run(results, replicas, len(probe), tmp)
        cases = {
            "run": (str(results / WORLD / "clusters"), str(results / WORLD / "activations.h5")),
            f"x{replicas}": (str(clusters), str(acts)),
        }
        counts: dict[str, int] = {}
        sides = {
            name: grids_job_side(counts, name, tmp / "out", clusters_dir, crops_h5, probe, acts_h5)
            for name, (clusters_dir, acts_h5) in cases.items()
        }
        runs = interleaved(sides, rounds=rounds, warmup=True)
        out: dict[str, Any] = {"num_workers": 0}
        for name, rs in runs.items():
            out[name] = {"neurons": counts[name], **per_neuron(rs, counts[name])}
        out["jpeg"] = bench_grids_jpeg(clusters, acts, len(probe), tmp, rounds)
    return out


def jpeg_folder(folder: Path, n: int, size: tuple[int, int] = JPEG_SIZE) -> int:
    """``n`` JPEG files (quality 90) of ImageNet's typical size, photo-like (smooth colour fields, edges and
    grain), named so that their sorted order is their index; returns the folder's bytes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    w, h = size
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
            (w, h), Image.BICUBIC
        )
        px = np.asarray(coarse, dtype=np.float32) + rng.normal(0, 10, (h, w, 3))
        px[rng.integers(0, h) :, rng.integers(0, w) :] *= 0.6  # an edge
        Image.fromarray(px.clip(0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return sum(p.stat().st_size for p in folder.iterdir())


def bench_grids_jpeg(clusters: Path, acts: Path, n_images: int, tmp: Path, rounds: int) -> dict[str, Any]:
    """The replicated run's grids over a folder of JPEG files (``n_images``, 500 x 375) under ImageNet's
    preprocessing (224 px crop of the 256 px short side): ``full`` decodes each file in full, ``reduced`` at
    the DCT scale :meth:`~sieve.backends.preprocess.Preprocess.draft_size` allows (what the job does),
    ``reduced_2_threads`` the same with 2 threads (``num_workers`` 2). Per
    neuron and per image loaded (each probe image once per job)."""
    import h5py

    from sieve.backends.imagesets import open_image_set
    from sieve.backends.preprocess import Preprocess
    from sieve.io import read_json

    folder_bytes = jpeg_folder(tmp / "jpeg", n_images)
    probe = open_image_set("jpeg", {"kind": "imagefolder", "path": str(tmp / "jpeg")})
    crops_h5 = tmp / "crops_imagenet.h5"
    with h5py.File(crops_h5, "w") as f:
        f.attrs["preprocess"] = json.dumps(Preprocess().as_dict())
    loaded = len({int(c["probe_index"]) for p in clusters.glob("*.json") for c in read_json(p)["crops"]})
    counts: dict[str, int] = {}
    args = (tmp / "out", str(clusters), str(crops_h5), probe, str(acts))
    sides = {
        "full": grids_job_side(counts, "n", *args, reduced=False),
        "reduced": grids_job_side(counts, "n", *args, reduced=True),
        # what the rule runs for a probe without config.yaml's num_workers: 0 (the schema's 4, capped by the
        # job's 2 threads): thumbnails loaded and grids drawn by 2 threads
        "reduced_2_threads": grids_job_side(counts, "n", *args, reduced=True, workers=2),
    }
    runs = interleaved(sides, rounds=rounds, warmup=True)
    out: dict[str, Any] = {
        "images": n_images,
        "image_size": list(JPEG_SIZE),
        "bytes_per_image": folder_bytes // n_images,
        "images_loaded": loaded,
        "preprocess": "ImageNet (224 of 256)",
    }
    for name, rs in runs.items():
        out[name] = {"neurons": counts["n"], **per_neuron(rs, counts["n"])}
        out[name]["ms_per_image_min"] = round(1000 * out[name]["seconds_min"] / loaded, 3)
        out[name]["ms_per_image_median"] = round(1000 * out[name]["seconds_median"] / loaded, 3)
    out["speedup_reduced_vs_full"] = speedup(out["full"], out["reduced"])
    out["speedup_2_threads_vs_1"] = speedup(out["reduced"], out["reduced_2_threads"])
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
    ap.add_argument("--before", default="69f32b8", help="git revision of the grids' previous implementation")
    ap.add_argument("--replicas", type=int, default=20, help="copies of the run's neurons for the job's cost")
    ap.add_argument("--note", default="", help="recorded as is, e.g. that the machine was shared")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu_stages.json"))
    args = ap.parse_args()
    results = Path(args.results)
    record = {
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "note": args.note,
        "grids": bench_grids(results, args.rounds, args.before, args.replicas),
        "hypothesize": bench_hypothesize(results, args.concepts, args.rounds),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(record, indent=2))
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
