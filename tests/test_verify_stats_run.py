"""Verify's specificity, run for real (issue 13): the default planted world with a promiscuous neuron added and
Select disabled (so the redundant neurons get hypotheses too), through the whole workflow. What AR alone keeps
and what the specificity filter keeps, read from the run's own ar.csv and truth_summary.json and compared with
the figures docs/verify-stats.md quotes; the same scores measured offline by bench/bench_specificity.py (the
renderer and model called directly); and the two sanity checks on the run's cached activations, scored by the
workflow's own scorer."""

from __future__ import annotations

import csv
import importlib.util
import json
import re

import numpy as np
import pytest
import yaml

from helpers import REPO, run_snakemake
from sieve.concepts import concept_id
from sieve.evaluate.truth import is_right
from sieve.synthetic import load_world
from sieve.synthetic.world import resolve_spec_path
from sieve.verify.controls import concept_set_pool, score_hypotheses
from sieve.verify_stats import DEFAULT_MAX_CONTROL_RATE, NEUTRAL_PROMPTS

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

RUN = "results/synthetic/synthetic/synthetic"
AR = f"{RUN}/verify/ar.csv"
TRUTH = f"{RUN}/truth_summary.json"
# the figures of docs/verify-stats.md ("Evidence on the planted world") and how they are counted
DOC_SENTENCE = (
    r"Select disabled, the (?P<redundant_neurons>\d+) redundant neurons get (?P<redundant_n>\d+) hypotheses: AR "
    r"alone keeps (?P<redundant_paper>\d+) of them and the specificity filter (?P<redundant_specificity>\d+)\. "
    r"The promiscuous neuron gets (?P<promiscuous_n>\d+) hypotheses: AR keeps (?P<promiscuous_paper>\d+), the "
    r"specificity filter (?P<promiscuous_specificity>\d+)\. In all, of (?P<n>\d+) hypotheses the paper's rule "
    r"keeps (?P<wrong_paper>\d+) wrong ones and (?P<right_paper>\d+) right ones, the specificity filter "
    r"(?P<wrong_specificity>\d+) wrong and (?P<right_specificity>\d+) right\."
)


def _bench():
    spec = importlib.util.spec_from_file_location(
        "bench_specificity", REPO / "bench" / "bench_specificity.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The run's folder and world: config.yaml's planted world plus a promiscuous neuron, Select off, SIEVE only."""
    work = tmp_path_factory.mktemp("specificity_run")
    raw = yaml.safe_load(open(resolve_spec_path(load_world().source), encoding="utf-8"))
    raw["neurons"].append({"kind": "promiscuous"})
    spec = work / "world.yaml"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for section in ("models", "probes"):
        for entry in config[section].values():
            entry["spec"] = str(spec)
    config["concept_sets"] = {"synthetic": {"synthetic": str(spec)}}
    config["embedder"]["spec"] = config["generator"]["spec"] = str(spec)
    config["select"] = {"enabled": False}
    config["evaluate"] = {"stage_ablations": False}
    config["hypothesize"] = {"methods": ["sieve"]}
    run_snakemake(work, config, targets=(AR, TRUTH), timeout=1800)
    return work, str(spec)


def _rows(work) -> list[dict[str, str]]:
    with open(work / AR, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def evidence(work, spec: str) -> dict[str, int]:
    """The figures docs/verify-stats.md quotes, counted from the run's ar.csv."""
    world = load_world(spec)
    kinds = {n.index: n for n in world.neurons}
    rows = _rows(work)

    def count(sel, column):
        return sum(int(r[column]) for r in rows if sel(r))

    def of(kind):
        return lambda r: kinds[int(r["neuron"])].kind == kind

    def right(r):
        return is_right(world, r["concept"], kinds[int(r["neuron"])].concepts)

    redundant = [n for n in world.neurons if n.kind == "redundant"]
    return {
        "redundant_neurons": len(redundant),
        "redundant_n": sum(1 for r in rows if of("redundant")(r)),
        "redundant_paper": count(of("redundant"), "kept_paper"),
        "redundant_specificity": count(of("redundant"), "kept_specificity"),
        "promiscuous_n": sum(1 for r in rows if of("promiscuous")(r)),
        "promiscuous_paper": count(of("promiscuous"), "kept_paper"),
        "promiscuous_specificity": count(of("promiscuous"), "kept_specificity"),
        "n": len(rows),
        "wrong_paper": count(lambda r: not right(r), "kept_paper"),
        "right_paper": count(right, "kept_paper"),
        "wrong_specificity": count(lambda r: not right(r), "kept_specificity"),
        "right_specificity": count(right, "kept_specificity"),
    }


def test_ar_keeps_the_promiscuous_neurons_hypotheses_and_the_specificity_filter_does_not(run):
    work, spec = run
    ev = evidence(work, spec)
    rows = _rows(work)
    world = load_world(spec)
    kinds = {n.index: n.kind for n in world.neurons}
    # without Select the redundant neurons get hypotheses; AR alone already keeps none of them (a weak diffuse
    # neuron never passes its own top-1% threshold on one object), so the filter has nothing to remove there
    assert ev["redundant_n"] > 0 and ev["redundant_specificity"] <= ev["redundant_paper"]
    # the promiscuous neuron: AR verifies its hypotheses, the control rate rejects every one
    assert ev["promiscuous_paper"] > 0 and ev["promiscuous_specificity"] == 0
    prom = [r for r in rows if kinds[int(r["neuron"])] == "promiscuous" and r["kept_paper"] == "1"]
    assert min(float(r["control_rate"]) for r in prom) > DEFAULT_MAX_CONTROL_RATE
    # and it costs nothing: every right hypothesis AR keeps, the specificity filter keeps
    assert ev["right_specificity"] == ev["right_paper"] > 0 and ev["wrong_specificity"] < ev["wrong_paper"]
    # truth_summary.json counts the same, under each filter
    truth = json.loads((work / TRUTH).read_text())["hypotheses"]
    assert truth["n_wrong_kept_paper"] == truth["n_wrong_kept"] == ev["wrong_paper"]
    assert truth["n_wrong_kept_specificity"] == ev["wrong_specificity"]
    assert truth["n_right_kept_paper"] == ev["right_paper"]
    assert truth["n_right_kept_specificity"] == ev["right_specificity"]
    # the docs quote these figures
    text = re.sub(r"\s+", " ", (REPO / "docs" / "verify-stats.md").read_text(encoding="utf-8"))
    m = re.search(DOC_SENTENCE, text)
    assert m, "docs/verify-stats.md: the evidence sentence changed; update tests/test_verify_stats_run.py"
    assert {k: int(v) for k, v in m.groupdict().items()} == ev


def test_the_offline_bench_measures_the_same_scores(run):
    """bench/bench_specificity.py renders the pool and runs the model itself: its scores are the run's."""
    work, spec = run
    out = _bench().measure_run(work / "results", spec=spec)
    assert out["pool_prompts_in_cache"] > 0 and out["offline_vs_cache_max_abs_diff"] == 0.0
    offline = {(h["neuron"], h["concept"]): h for h in out["methods"]["sieve"]["hypotheses"]}
    rows = _rows(work)
    assert len(offline) == len({(int(r["neuron"]), r["concept"]) for r in rows})
    for r in rows:
        h = offline[(int(r["neuron"]), r["concept"])]
        for col in ("ar", "ar_low", "ar_high", "control_rate", "auc", "f1"):
            assert float(r[col]) == pytest.approx(h[col], abs=1e-9), (r["neuron"], r["concept"], col)
        assert bool(int(r["kept_paper"])) == h["kept_paper"]


def _activations(work, spec: str):
    """prompt -> the run's cached pooled activations [n, C]; prompts not in the cache are rendered and measured
    offline (bench_specificity's path, which gives the cached numbers: previous test)."""
    import glob

    bench = _bench()
    manifests = [
        json.loads(open(p).read()) for p in sorted(glob.glob(str(work / "results/generate/shards/*.json")))
    ]
    cached = bench._cached(manifests, work)
    seeds = next(iter(cached.values()))[0]
    meas = bench.Measurer(load_world(spec), spec)

    def acts(prompt: str) -> np.ndarray:
        if prompt not in cached:
            cached[prompt] = (seeds, meas.prompt(prompt, seeds))
        return cached[prompt][1]

    return acts


def test_sanity_checks_on_the_runs_activations(run):
    """Extra labels: half of a kept right hypothesis' images replaced by the images of the pool's concept its
    neuron fires least on lowers its AR, AUC and F1. Missing labels: for each attribute neuron, no colour-and-shape
    hypothesis gets a higher F1 than the colour alone. Scored by the Activation Rate step's own scorer."""
    work, spec = run
    world = load_world(spec)
    kinds = {n.index: n for n in world.neurons}
    select = json.loads((work / "results/synthetic/synthetic/select/summary.json").read_text())
    threshold = {int(k): float(v["threshold"]) for k, v in select["neurons"].items()}
    pool = concept_set_pool(work / "results/concepts/synthetic/concepts.json", 20, 0, NEUTRAL_PROMPTS)
    acts = _activations(work, spec)
    pool_acts = [acts(e.text) for e in pool]  # the world's prompt template is "{}"

    def score(neuron: int, concept: str, x: np.ndarray) -> dict[str, float]:
        row = {"neuron": neuron, "concept": concept, "concept_id": concept_id(concept)}
        s = score_hypotheses([row], [x], [threshold[neuron]], pool, pool_acts, "{}")[0]
        return {**s, "ar": float(np.mean(x > threshold[neuron]))}

    checked = 0
    for r in _rows(work):
        n = int(r["neuron"])
        if r["kept_paper"] != "1" or not is_right(world, r["concept"], kinds[n].concepts):
            continue
        x = acts(r["concept"])[:, n]
        quiet = min((e for e in pool if not e.neutral), key=lambda e: float(acts(e.text)[:, n].mean()))
        mixed = np.r_[x[: x.size // 2], acts(quiet.text)[x.size // 2 :, n]]
        clean, dirty = score(n, r["concept"], x), score(n, r["concept"], mixed)
        for key in ("ar", "auc", "f1"):
            assert dirty[key] < clean[key], (n, r["concept"], quiet.text, key, clean[key], dirty[key])
        checked += 1
    assert checked > 0
    attributes = [n for n in world.neurons if n.kind == "attribute"]
    assert attributes
    for n in attributes:
        colour = n.concepts[0]
        complete = score(n.index, colour, acts(colour)[:, n.index])
        for shape in world.shapes:
            partial = score(n.index, f"{colour} {shape}", acts(f"{colour} {shape}")[:, n.index])
            assert partial["f1"] <= complete["f1"] + 1e-12, (colour, shape, partial["f1"], complete["f1"])
