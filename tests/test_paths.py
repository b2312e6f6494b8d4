"""sieve.paths, the one home of the path scheme: its patterns, the variant roots, and that the rules spell no
path of their own."""

from __future__ import annotations

import re

from helpers import REPO
from sieve import paths


def fill(pattern: str, **wildcards: str) -> str:
    return pattern.format(**wildcards)


def test_run_files_follow_the_documented_layout():
    w = {"model": "m", "probe": "p", "concept_set": "c", "shard": "3"}
    assert fill(paths.ACTIVATIONS, **w) == "results/m/p/activations.h5"
    assert fill(paths.SELECT_SUMMARY, **w) == "results/m/p/select/summary.json"
    assert fill(paths.HYPOTHESES, **w) == "results/m/p/c/hypotheses"
    assert {k: fill(v, **w) for k, v in paths.VERIFY.items()} == {
        "ar": "results/m/p/c/verify/ar.csv",
        "summary": "results/m/p/c/verify/summary.json",
        "generated": "results/m/p/c/verify/generated.json",
        "neuron_concepts": "results/m/p/c/neuron_concepts.csv",
    }
    assert fill(paths.GENERATION_SHARD, **w) == "results/generate/shards/3.json"
    assert fill(paths.CONCEPT_EMBEDDINGS, **w) == "results/concepts/c/embeddings.h5"
    assert paths.REPORT_HTML == "results/report/index.html"


def test_variant_roots_reuse_the_run_layout():
    w = {"model": "m", "probe": "p", "concept_set": "c", "tau": "5"}
    assert fill(paths.hypotheses(paths.method_root("clip_dissect")), **w) == (
        "results/m/p/c/baselines/clip_dissect/hypotheses"
    )
    assert paths.method_root("sieve") == paths.RUN
    assert fill(paths.select_summary(paths.stage_ablation_model_probe("no_select")), **w) == (
        "results/stage_ablations/m/p/no_select/select/summary.json"
    )
    assert fill(paths.verify_files(paths.stage_ablation_run("no_verify"))["ar"], **w) == (
        "results/stage_ablations/m/p/c/no_verify/verify/ar.csv"
    )
    assert fill(paths.STAGE_ABLATION_TABLE, **w) == "results/stage_ablations/m/p/c/ablations.json"
    assert fill(paths.crops(paths.SWEEP_MODEL_PROBE), **w) == "results/sweeps/m/p/crops/crops.h5"
    assert fill(paths.verify_files(paths.SWEEP_TAU_RUN)["summary"], **w) == (
        "results/sweeps/m/p/c/tau_5/verify/summary.json"
    )


def test_logs_and_benchmarks_mirror_results():
    assert (
        paths.log(paths.SWEEP_MODEL_PROBE, "select_neurons")
        == "logs/sweeps/{model}/{probe}/select_neurons.log"
    )
    assert (
        paths.benchmark(paths.GENERATE, "generate_shard_{shard}")
        == "benchmarks/generate/generate_shard_{shard}.tsv"
    )
    assert paths.log("", "prefetch") == "logs/prefetch.log"


def test_rules_spell_no_path_of_their_own():
    """Every results/, logs/ and benchmarks/ path of the rules comes from sieve.paths (comments aside)."""
    for smk in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for n, line in enumerate(smk.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"[\"'](results|logs|benchmarks)/", code), f"{smk.name}:{n}: {line.strip()}"
