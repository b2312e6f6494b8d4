"""The report's "Predicted cost beside measured" table (sieve.report.cost_table): sieve.cost's prediction from the
run's own files, the counts the run processed, GPU-seconds from measured rates, and the measured wall time; a
count that cannot be had shows as "unknown" and never fails the report."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from report_fixtures import WORDS, _write_bench, make_results, read_data_blob

from sieve import cost
from sieve.report import build_report, read_benchmarks
from sieve.report.cost_table import NO_RATE, TITLE, cost_table

N_IMAGES, N_NEURONS, TOP_N, N_GENERATED = 60, 12, 6, 37
SETTINGS = {
    "models": {"toy": {"source": "python", "factory": "tinymodels:hotspot_cnn"}},
    "probes": {"pics": {"kind": "imagefolder", "path": "/data/pics"}},
    "concept_sets": {"words": {"path": "words.txt"}},
    "select": {"top_n": TOP_N},
    "hypothesize": {"k_max": 3, "concepts_per_cluster": 2},
    "generator": {"source": "diffusers", "steps": 1, "images_per_concept": 3, "shards": 2},
    "verify": {"controls": 4},
}


def write_run_files(root: Path) -> None:
    """What the fixtures lack: the activations and crops files, shard manifests with n_generated, and the
    benchmark files of embed_crops and the generation shards."""
    mp = root / "results/toy/pics"
    with h5py.File(mp / "activations.h5", "w") as f:
        f.create_dataset("activations", data=np.zeros((N_IMAGES - 2, N_NEURONS), dtype="float32"))
        f.attrs.update({"n_images_total": N_IMAGES, "n_neurons": N_NEURONS, "n_skipped": 2, "complete": 1})
    (mp / "crops").mkdir(parents=True, exist_ok=True)
    with h5py.File(mp / "crops/crops.h5", "w") as f:
        f.create_dataset("embeddings", data=np.zeros((4, TOP_N, 8), dtype="float32"))
    gen = root / "results/generate"
    shard0 = json.loads((gen / "shards/0.json").read_text())
    (gen / "shards/0.json").write_text(json.dumps({**shard0, "n_generated": N_GENERATED - 5}))
    (gen / "shards/1.json").write_text(json.dumps({"shard": 1, "n_generated": 5}))
    (gen / "plan/plan.json").write_text(json.dumps({"shards": [], "work": [0, 1]}))
    _write_bench(root / "benchmarks/toy/pics/embed_crops.tsv", 1.25)
    for shard, secs in enumerate([2.5, 4.0]):
        _write_bench(root / f"benchmarks/generate/generate_shard_{shard}.tsv", secs)


def build(root: Path) -> dict:
    out = root / "results/report"
    return build_report(
        out / "index.html",
        out / "assets",
        models=["toy"],
        probes=["pics"],
        concept_sets=["words"],
        results=root / "results",
        benchmarks=root / "benchmarks",
        settings=SETTINGS,
    )


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_cost")
    make_results(root, n_neurons=N_NEURONS, n_images=N_IMAGES, top_n=TOP_N, baseline=False, truth=False)
    write_run_files(root)
    return root


def test_the_table_shows_the_prediction_the_processed_counts_and_the_measured_seconds(run_root):
    data = build(run_root)
    page = read_data_blob((run_root / "results/report/index.html").read_text(encoding="utf-8"))
    assert page["cost"] == data["cost"]
    table = data["cost"]
    assert table["title"] == TITLE
    rows = {r[0]: dict(zip(table["columns"], r, strict=True)) for r in table["rows"]}
    assert list(rows) == ["probe", "embed_crops", "generate"]
    config = {k: SETTINGS[k] for k in SETTINGS}
    pred = cost.predict(config, {"pics": N_IMAGES}, {"toy": N_NEURONS}, concepts_given={"words": len(WORDS)})
    for st in pred["stages"]:
        assert rows[st["stage"]]["predicted (at most)"] == st["count"] > 0
        assert rows[st["stage"]]["items"] == st["items"]
    assert rows["probe"]["predicted (at most)"] == N_IMAGES  # one model, one probe set
    assert rows["embed_crops"]["predicted (at most)"] == N_NEURONS * TOP_N
    assert [rows[s]["processed"] for s in rows] == [N_IMAGES - 2, 4 * TOP_N, N_GENERATED]
    measured = {r[0]: r[2] for r in read_benchmarks(run_root / "benchmarks")["rows"]}
    for stage, bench in cost.MEASURED_STAGES.items():
        assert rows[stage]["benchmark"] == bench and rows[stage]["measured s"] == measured[bench]
    assert rows["generate"]["measured s"] == pytest.approx(6.5)
    assert all(r["GPU-s"] == NO_RATE for r in rows.values())  # the checkout has no GPU suite's rates


def test_measured_rates_give_gpu_seconds_per_class(run_root, tmp_path):
    rec = {
        "gpu": "H200",
        "probe": {"tinymodels:hotspot_cnn": {"per_s_median": 10.0}, "toy": {"per_s_median": 20.0}},
        "crop_embedding": {"per_s_median": 8.0},
    }
    (tmp_path / "gpu_suite_h200.json").write_text(json.dumps(rec))
    table = cost_table(
        SETTINGS,
        run_root / "results",
        run_root / "benchmarks",
        ["toy"],
        ["pics"],
        ["words"],
        {"words": len(WORDS)},
        rates_dir=tmp_path,
    )
    col = table["columns"].index("GPU-s on H200")
    gpu_s = {r[0]: r[col] for r in table["rows"]}
    assert gpu_s == {"probe": N_IMAGES / 20.0, "embed_crops": N_NEURONS * TOP_N / 8.0, "generate": NO_RATE}


def test_a_missing_count_is_unknown_and_the_report_still_builds(tmp_path):
    make_results(tmp_path, n_neurons=N_NEURONS, n_images=N_IMAGES, baseline=False, truth=False)
    (tmp_path / "results/concepts/words/concepts.json").unlink()  # concepts: unknown; no activations.h5
    data = build(tmp_path)
    assert (tmp_path / "results/report/index.html").is_file()
    rows = {r[0]: dict(zip(data["cost"]["columns"], r, strict=True)) for r in data["cost"]["rows"]}
    assert rows["probe"]["predicted (at most)"] == "unknown: no count of probe images of pics"
    assert rows["embed_crops"]["predicted (at most)"] == "unknown: no count of neurons of toy"
    assert rows["generate"]["predicted (at most)"] == "unknown: no count of neurons of toy; concepts of words"
    assert rows["probe"]["processed"] == "unknown: no toy/pics/activations.h5"
    assert rows["generate"]["processed"] == "unknown: no n_generated in generate/shards/0.json"
    assert all(r["GPU-s"] == "unknown" for r in rows.values())
    assert rows["embed_crops"]["measured s"] == "no benchmark file"


@pytest.mark.parametrize(
    ("name", "content"),
    [("toy/pics/activations.h5", b"not an HDF5 file"), ("toy/pics/crops/crops.h5", b"")],
)
def test_an_unreadable_file_drops_the_table_not_the_report(tmp_path, caplog, name, content):
    make_results(tmp_path, n_neurons=N_NEURONS, n_images=N_IMAGES, baseline=False, truth=False)
    (tmp_path / "results" / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "results" / name).write_bytes(content)
    data = build(tmp_path)
    assert data["cost"] is None and data["timing"]["rows"]
    assert (tmp_path / "results/report/index.html").is_file()
    assert TITLE in caplog.text
