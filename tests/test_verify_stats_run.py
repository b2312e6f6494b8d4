"""The default planted world with Select disabled, run for real: what AR alone keeps for the redundant neurons,
and what the specificity filter keeps, with the control pool built and measured offline from the run
(bench/bench_specificity.py; the pipeline does not generate controls yet). Figures recorded in
bench/results/verify_specificity.json."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from helpers import REPO, run_snakemake
from sieve.verify_stats import DEFAULT_MAX_CONTROL_RATE

RUN = "results/synthetic/synthetic/synthetic"
TARGETS = (f"{RUN}/verify/ar.csv", f"{RUN}/baselines/clip_dissect/verify/ar.csv")


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_specificity", REPO / "bench" / "bench_specificity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.workflow
@pytest.mark.slow
def test_specificity_on_the_default_world_without_select(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["select"] = {"enabled": False}
    config["evaluate"] = {"stage_ablations": False}
    # only what measure_run reads (Select's summary, the shards, both methods' ar.csv): no grids, no report
    run_snakemake(tmp_path, config, targets=TARGETS)
    out = _bench().measure_run(tmp_path / "results")
    assert out["select_enabled"] is False
    # prompts of the pool the run generated give, measured offline, exactly the cached activations
    assert out["pool_prompts_in_cache"] > 0 and out["offline_vs_cache_max_abs_diff"] == 0.0
    cap = f"control_rate<={DEFAULT_MAX_CONTROL_RATE}"
    for method in ("sieve", "clip_dissect"):
        summary = out["methods"][method]["summary"]
        groups = summary["groups"]
        redundant = groups["redundant/wrong"]
        assert redundant["n"] > 0  # without Select, redundant neurons get hypotheses
        # AR alone keeps none: a weak diffuse neuron never passes its own top-1% probe threshold on one object
        assert redundant["kept_paper"] == 0 and redundant["control_rate_max"] == 0.0
        assert redundant["kept_specificity"][cap] == 0
        # the filter costs nothing here: every right hypothesis AR keeps, it keeps
        assert summary["right_kept_specificity"][cap] == summary["right_kept_paper"] > 0
        assert summary["wrong_kept_paper"] == summary["wrong_kept_specificity"][cap] == 0
        assert summary["control_rate_max_right_kept_paper"] <= DEFAULT_MAX_CONTROL_RATE
