"""sieve.cost: a run's counts per stage from its config, GPU-seconds only from measured or given rates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from helpers import REPO
from sieve.config import with_defaults
from sieve.cost import CostError, main, measured_rates, predict, with_rates

SHARED_LISTS = Path(
    "/work/shared/concepts"
)  # a local copy of the example's concept lists, where there is one


@pytest.fixture(scope="module")
def default_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_counts_of_the_default_config_follow_from_its_keys(default_config) -> None:
    pred = predict(default_config)
    (probe,) = default_config["probes"].values()
    gen = with_defaults(default_config["generator"], "generator")
    hyp = with_defaults(default_config.get("hypothesize"), "hypothesize")
    top_n = with_defaults(default_config.get("select"), "select")["top_n"]
    neurons = pred["neurons"]["synthetic"]
    (n_concepts,) = pred["concepts"].values()
    assert pred["probe_images"] == {"synthetic": probe["n_images"]}
    assert neurons > 0 and n_concepts > 0
    hyps = neurons * hyp["k_max"] * hyp["concepts_per_cluster"]
    assert pred["hypotheses_at_most"] == hyps
    # Verify's control pool: up to verify.controls concepts of the set, and the neutral prompts
    ver = with_defaults(default_config.get("verify"), "verify")
    prompts = min(n_concepts, hyps + ver["controls"]) + len(ver["neutral_prompts"])
    assert pred["distinct_prompts_at_most"] == prompts
    counts = {s["stage"]: s["count"] for s in pred["stages"]}
    assert counts == {
        "probe": probe["n_images"],
        "embed_crops": neurons * top_n,
        "generate": prompts * gen["images_per_concept"],
    }
    no_verify = predict({**default_config, "verify": {**default_config.get("verify", {}), "enabled": False}})
    assert no_verify["distinct_prompts_at_most"] == min(n_concepts, hyps)
    half = predict(default_config, selected_share=0.5)
    assert half["selected_at_most"] == {"synthetic": math.ceil(neurons / 2)}


def test_gpu_seconds_only_where_a_rate_is_known_and_wall_time_spreads_the_shards(default_config) -> None:
    pred = predict(default_config, neurons_given={"synthetic": 100})
    gen = next(s for s in pred["stages"] if s["stage"] == "generate")
    shards = pred["shards"]
    out = with_rates(pred, {"generate/synthetic": 7.0}, gpus=shards + 3)
    assert gen["gpu_seconds"] == round(gen["count"] / 7.0, 1)
    assert gen["wall_seconds"] == round(gen["gpu_seconds"] / shards, 1)  # no more GPUs than shards
    probe = next(s for s in out["stages"] if s["stage"] == "probe")
    assert probe["gpu_seconds"] is None and probe["missing_rates"] == ["probe/synthetic"]
    assert out["wall_seconds"] is None  # never a total from a guessed stage


def test_an_unmeasured_gpu_class_is_refused_and_a_passed_rate_is_used(tmp_path, capsys) -> None:
    cfg = str(REPO / "config.yaml")
    assert main(["--configfile", cfg, "--gpu-class", "H100", "--results-dir", str(tmp_path)]) == 2
    assert "'H100' was never measured" in capsys.readouterr().err
    out_json = tmp_path / "pred.json"
    rates = [
        "--rate",
        "probe/synthetic=600",
        "--rate",
        "crop_embedding=300",
        "--rate",
        "generate/synthetic=42",
    ]
    assert main(["--configfile", cfg, "--results-dir", str(tmp_path), *rates, "--json", str(out_json)]) == 0
    pred = json.loads(out_json.read_text())
    assert pred["wall_seconds"] == round(sum(s["wall_seconds"] for s in pred["stages"]), 1)
    assert pred["stages"][0]["gpu_seconds"] == round(pred["stages"][0]["count"] / 600, 1)
    bench = tmp_path / "benchmarks" / "generate"
    bench.mkdir(parents=True)
    for shard, secs in ((0, 2.5), (1, 4.0)):
        (bench / f"generate_shard_{shard}.tsv").write_text(f"s\th:m:s\n{secs}\t0:00:0{int(secs)}\n")
    args = ["--configfile", cfg, "--results-dir", str(tmp_path), "--json", str(out_json)]
    assert main([*args, "--benchmarks", str(tmp_path / "benchmarks")]) == 0
    measured = {s["stage"]: s["measured_seconds"] for s in json.loads(out_json.read_text())["stages"]}
    assert measured == {"probe": None, "embed_crops": None, "generate": 6.5}  # the shards' jobs summed
    assert "measured s" in capsys.readouterr().out
    assert main(["--configfile", cfg, "--rate", "generate=fast"]) == 2
    assert "is not a number" in capsys.readouterr().err


def test_measured_rates_come_from_the_gpu_suites_results_not_its_small_mode(tmp_path) -> None:
    suite = {
        "gpu": "NVIDIA H200",
        "small": False,
        "probe": {"resnet50": {"per_s_median": 5100.0}, "images": 10},
        "crop_embedding": {"per_s_median": 900.0},
        "generate": {"turbo": {"batch_sizes": {"8": {"per_s_median": 80.0}, "16": {"per_s_median": 95.0}}}},
    }
    (tmp_path / "gpu_suite_NVIDIA_H200.json").write_text(json.dumps(suite))
    (tmp_path / "gpu_suite_cpu.json").write_text(json.dumps({**suite, "gpu": "cpu", "small": True}))
    rates = measured_rates(tmp_path)
    assert list(rates) == ["NVIDIA H200"]
    assert rates["NVIDIA H200"]["rates"] == {
        "probe/resnet50": 5100.0,
        "crop_embedding": 900.0,
        "generate/turbo": 95.0,
    }
    # the suite's current record: the job's rate is boxes, then crops from JPEG files, their times per crop added
    suite["crop_embedding"] = {
        "per_s_median": 900.0,
        "from_jpeg": {"per_s_median": 600.0},
        "boxes": {"per_s_median": 3000.0},
    }
    (tmp_path / "gpu_suite_NVIDIA_H200.json").write_text(json.dumps(suite))
    assert measured_rates(tmp_path)["NVIDIA H200"]["rates"]["crop_embedding"] == pytest.approx(500.0)


@pytest.mark.skipif(not SHARED_LISTS.is_dir(), reason="no local copy of the example's concept lists")
def test_the_readme_quotes_the_paper_setup_prediction_of_the_results_file() -> None:
    """bench/results/cost_resnet50_imagenet.json is what the command predicts for examples/resnet50_imagenet.yaml
    (ImageNet val's 50,000 images), and the README quotes its counts."""
    config = yaml.safe_load((REPO / "examples" / "resnet50_imagenet.yaml").read_text())
    pred = predict(
        config,
        probe_given={"imagenet_val": 50000},
        concept_files={
            "broden": str(SHARED_LISTS / "broden_labels_clean.txt"),
            "common3k": str(SHARED_LISTS / "3k.txt"),
        },
    )
    recorded = json.loads((REPO / "bench" / "results" / "cost_resnet50_imagenet.json").read_text())
    assert [s["count"] for s in pred["stages"]] == [s["count"] for s in recorded["stages"]]
    assert pred["distinct_prompts_at_most"] == recorded["distinct_prompts_at_most"]
    readme = (REPO / "README.md").read_text()
    for s in recorded["stages"]:
        assert f"{s['count']:,}" in readme, s["stage"]
    with pytest.raises(CostError, match="--probe-images imagenet_val=N"):
        predict(config)
