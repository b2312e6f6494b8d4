"""The benchmarks run (small mode, CPU) and compare honestly: both sides interleaved, repeated, min and median."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO, snakemake_env

sys.path.insert(0, str(REPO / "bench"))
from timing import interleaved, speedup, summary  # noqa: E402


def test_sides_alternate_every_round_and_report_min_and_median() -> None:
    order: list[str] = []
    times = {"a": iter([3.0, 1.0, 2.0, 9.0]), "b": iter([2.0, 4.0, 1.0, 5.0])}

    def side(name: str):
        def run() -> dict:
            order.append(name)
            return {"seconds": next(times[name])}

        return run

    runs = interleaved({"a": side("a"), "b": side("b")}, rounds=3, warmup=True)
    assert order == ["a", "b"] * 4  # the warm-up round, then three counted rounds
    a, b = summary(runs["a"], work=10), summary(runs["b"], work=10)
    assert a["seconds"] == [1.0, 2.0, 9.0] and a["seconds_min"] == 1.0 and a["seconds_median"] == 2.0
    assert b["seconds"] == [4.0, 1.0, 5.0] and b["per_s_max"] == 10.0 and b["per_s_median"] == 2.5
    assert speedup(a, b) == {"from_min": 1.0, "from_median": 0.5}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        env=snakemake_env(),
        timeout=600,
    )


def test_bench_probe_small_mode(tmp_path) -> None:
    out = tmp_path / "probe.json"
    proc = _run(
        "bench_probe.py",
        "--images",
        "6",
        "--batch-size",
        "3",
        "--workers",
        "0",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for side in ("plain", "sieve"):
        assert report[side]["rounds"] == 2 and len(report[side]["seconds"]) == 2
        assert report[side]["seconds_min"] <= report[side]["seconds_median"]
    assert set(report["speedup"]) == {"from_min", "from_median"}


def test_bench_probe_decode_compare_small_mode(tmp_path) -> None:
    """--decode-compare: host and device decode through run_probe, interleaved, with the activations' gap."""
    out = tmp_path / "decode.json"
    proc = _run(
        "bench_probe.py",
        "--decode-compare",
        "--images",
        "4",
        "--batch-size",
        "2",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    for side in ("host", "device"):
        assert report[side]["rounds"] == 2 and report[side]["ms_per_image_min"] > 0
    assert set(report["device_speedup"]) == {"from_min", "from_median"}
    assert report["pooled_max_abs_diff"] < 0.005 * report["pooled_max_abs"]


def test_bench_generate_small_mode(tmp_path) -> None:
    out = tmp_path / "generate.jsonl"
    proc = _run(
        "bench_generate.py",
        "--images",
        "8",
        "--images-per-concept",
        "2",
        "--batch-size",
        "4",
        "--warmup",
        "1",
        "--rounds",
        "2",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text().splitlines()[-1])
    assert record["images"] == 8
    assert record["loop"]["rounds"] == record["shard"]["rounds"] == 2
    assert 0 < record["shard_share_of_generate_only_median"]
    assert set(record["speedup_shard_vs_loop"]) == {"from_min", "from_median"}


def test_compare_revisions_alternates_two_checkouts(tmp_path) -> None:
    """bench/compare_revisions.py: --before checked out in a temporary worktree, each side its own bench_generate
    process, every process's share kept, and the worktree removed afterwards."""
    out = tmp_path / "revisions.json"
    args = [
        "--images",
        "4",
        "--images-per-concept",
        "2",
        "--batch-size",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
    ]
    proc = _run("compare_revisions.py", "--before", "HEAD", "--rounds", "2", "--out", str(out), "--", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert report["before_revision"] == head.stdout.strip()
    assert report["after_revision"].startswith(report["before_revision"])
    assert report["bench_generate_args"] == args and report["images"] == 4
    for side in ("before", "after"):
        shares = report[side]["share_of_generate_only"]
        assert len(shares) == 2 and all(0 < x for x in shares)
        assert report[side]["share_min"] <= report[side]["share_median"] <= report[side]["share_max"]
    worktrees = subprocess.run(["git", "worktree", "list"], cwd=REPO, capture_output=True, text=True).stdout
    assert "sieve-compare-" not in worktrees


def test_shard_phases_records_the_writer_alone_and_in_the_shard(tmp_path) -> None:
    out = tmp_path / "phases.json"
    proc = _run("shard_phases.py", "--runs", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ph = json.loads(out.read_text())
    assert 0 < ph["generate_seconds_per_run"] < ph["seconds_per_run"]
    assert ph["writer_seconds_per_run"] == round(ph["writer_thumbnail_files"] + ph["writer_concept_files"], 4)
    assert 0 < ph["writer_cpu_seconds_per_run"]
    assert 0 < ph["thumbnail_file_alone_ms"] and 0 < ph["thumbnail_file_in_shard_ms"] and 0 < ph["mkdir_ms"]


def test_gpu_suite_small_mode_records_every_section(tmp_path) -> None:
    """The GPU suite's small CPU mode: every section runs and is recorded, FLOPs are counted, and no FLOP floor
    is claimed without a known GPU peak."""
    out = tmp_path / "suite.json"
    proc = _run(
        "gpu_suite.py",
        "--small",
        "--device",
        "cpu",
        "--rounds",
        "1",
        "--compile-backend",
        "eager",
        "--budget-s",
        "900",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["small"] is True and rec["peak_bf16_tflops"] is None
    probe = rec["probe"]["resnet18"]
    assert probe["per_s_median"] > 0 and probe["flops_per_item"] > 1e8  # ResNet-18 at 224: about 3.6 GFLOP
    assert probe["floor_per_s"] is None and probe["fraction_of_floor"] is None
    # both decodes ran, interleaved; on the CPU `auto` is the host decode, whose figures are the arch's own
    assert probe["decode"] == "host" and set(probe["by_decode"]) == {"host", "device"}
    assert probe["by_decode"]["host"]["seconds"] == probe["seconds"]
    assert probe["by_decode"]["device"]["rounds"] == 1 and probe["by_decode"]["device"]["per_s_median"] > 0
    crops = rec["crop_embedding"]
    assert crops["crops"] == 8 and crops["per_s_median"] > 0 and crops["seconds_for_41k_crops_median"] > 0
    assert crops["embedder"].startswith("open_clip:") and crops["flops_per_item"] > 0  # sieve's embedder
    assert crops["from_jpeg"]["per_s_median"] > 0 and crops["boxes"]["crops"] == 80
    gen = rec["generate"]
    assert set(gen["turbo"]["batch_sizes"]) == {"2", "4"}
    for r in gen["turbo"]["batch_sizes"].values():
        assert r["per_s_median"] > 0 and 0 < r["whole_shard_share_of_generate_only_median"] <= 1.5
    assert (
        gen["keep_images"]["full"]["per_s_median"] > 0 < gen["keep_images"]["full_share_of_thumbnails_median"]
    )
    assert gen["compile"]["backend"] == "eager" and gen["compile"]["on"]["per_s_median"] > 0
    # the generator's own settings: compile through generator.compile, channels_last per auto (off on a CPU)
    assert gen["speed"] == {"channels_last": "auto", "applied": {"channels_last": [], "compile": []}}
    assert gen["compile"]["applied"] == {
        "channels_last": [],
        "compile": ["unet", "vae.decoder"],
        "compile_backend": "eager",
        "compile_mode": "default",
    }
    assert gen["compile"]["off"]["rounds"] == gen["compile"]["on"]["rounds"] == 1
    assert gen["compile"]["speedup"]["from_median"] > 0
    assert (
        gen["base"]["steps"] == 2 and gen["base"]["flops_per_item"] > gen["compile"]["on"]["flops_per_item"]
    )


def test_bench_crops_small_mode(tmp_path) -> None:
    """Host against device crop path through sieve.crops, boxes before and after: same boxes on every side
    (else the bench exits non-zero), close embeddings, every side timed over the rounds."""
    out = tmp_path / "crops.json"
    proc = _run("bench_crops.py", "--small", "--rounds", "3", "--threads", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rec = json.loads(out.read_text())
    embed, boxes = rec["embed"], rec["boxes"]
    assert embed["crops"] == 18 and embed["side"] == 224 and embed["min_cosine_device_vs_host"] >= 0.99
    for side in ("host", "device"):
        assert embed[side]["rounds"] == 3 and embed[side]["per_s_median"] > 0
    assert boxes["crops"] == 60 and boxes["threads"] == 2
    for side in ("before", "after_1_thread", "after_threads"):
        assert len(boxes[side]["seconds"]) == 3 and boxes[side]["seconds_min"] > 0
