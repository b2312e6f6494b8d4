"""Probe + Select through a real `snakemake` run, and config validation before any job starts."""

from __future__ import annotations

import json

import h5py
import pytest

from helpers import jobs_run, make_image_folder, run_snakemake, tiny_config

TARGETS = ("results/tiny/pics/select/summary.json", "results/tiny/pics/select/ratio_histogram.png")


@pytest.mark.workflow
def test_probe_and_select_end_to_end(tmp_path) -> None:
    images = make_image_folder(tmp_path / "images", n_per_class=10, corrupt=1)
    proc = run_snakemake(tmp_path / "run", tiny_config(images, select={"tau": 1.2, "top_n": 4}), TARGETS)
    assert jobs_run(proc) == {"probe_activations": 1, "select_neurons": 1, "ratio_histogram": 1}
    res = tmp_path / "run" / "results" / "tiny" / "pics"
    with h5py.File(res / "activations.h5") as f:
        assert f["activations"].shape == (20, 8)
        assert f["topk/index"].shape == (8, 4) and f["topk/maps"].shape == (8, 4, 4, 4)
        assert f.attrs["n_skipped"] == 1 and f.attrs["layer"] == "layer4" and f.attrs["top_n"] == 4
        paths = [s.decode() for s in f["images"][()]]
        assert "cats/broken0.jpg" not in paths and paths[0] == "cats/000.png"
        assert sorted(set(f["labels"][()].tolist())) == [0, 1]
    log = (tmp_path / "run" / "logs" / "tiny" / "pics" / "probe_activations.log").read_text()
    assert (
        "skipped unreadable image" in log and "broken0.jpg" in log and "probe tiny/pics" in log
    )  # progress bar
    summary = json.loads((res / "select" / "summary.json").read_text())
    assert summary["n_neurons"] == 8 and summary["tau"] == 1.2 and summary["n_skipped"] == 1
    selected = sorted(int(n) for n, v in summary["neurons"].items() if v["selected"])
    assert sorted(int(p.stem) for p in (res / "select" / "neurons").glob("*.json")) == selected
    assert (res / "select" / "ratio_histogram.png").stat().st_size > 1000

    # changing tau reruns selection (and what follows), never the probe
    proc = run_snakemake(tmp_path / "run", tiny_config(images, select={"tau": 50.0, "top_n": 4}), TARGETS)
    assert jobs_run(proc) == {"select_neurons": 1, "ratio_histogram": 1}
    assert json.loads((res / "select" / "summary.json").read_text())["tau"] == 50.0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"select": {"tua": 3}}, "'tua' was unexpected"),
        ({"select": {"tau": "ten"}}, "'ten' is not of type 'number'"),
        ({"device": "tpu"}, "'tpu' is not one of"),
        ({"models": {"m": {"source": "caffe"}}}, "'caffe' is not one of"),
        ({"probes": {"p": {"kind": "imagefolder", "pathh": "/x"}}}, "'pathh' was unexpected"),
        (
            {"evaluate": {"ablations": True}},
            "config key evaluate.ablations was renamed evaluate.stage_ablations",
        ),
        (  # the old global list (every model entry, final-layer logits too) names the per-entry spelling
            {"evaluate": {"ablate_neurons": [3]}},
            "write `evaluate: {ablate_neurons: {<model>: [3]}}`",
        ),
        (
            {"evaluate": {"ablate_neurons": {"tinyy": [3]}}},
            "config key evaluate.ablate_neurons.tinyy: no model entry 'tinyy' in models: (tiny)",
        ),
    ],
)
@pytest.mark.workflow
def test_config_errors_stop_before_any_job(tmp_path, patch, message) -> None:
    cfg = tiny_config(tmp_path)
    cfg.update(patch)
    proc = run_snakemake(tmp_path / "run", cfg, TARGETS, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "results").exists()


@pytest.mark.workflow
def test_missing_probe_path_is_one_clear_error(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "nowhere")
    proc = run_snakemake(tmp_path / "run", cfg, TARGETS, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "run" / "logs" / "tiny" / "pics" / "probe_activations.log").read_text()
    assert f"probe path does not exist: {tmp_path / 'nowhere'}" in log
    assert not (tmp_path / "run" / "results" / "tiny" / "pics" / "activations.h5").exists()
