"""The README's main command on the planted-concept world, end to end: one real `snakemake` run of the
repository's config.yaml as is (tests/conftest.py's ``default_run``, which other modules share), read by every
assert below."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers import DEFAULT_RUN_TIMEOUT_S, jobs_run, run_snakemake
from sieve.synthetic import load_world

# the first test to run makes the shared default run
pytestmark = [pytest.mark.slow, pytest.mark.timeout(DEFAULT_RUN_TIMEOUT_S + 600)]

RUN = "results/synthetic/synthetic/synthetic"


@pytest.fixture
def demo(default_run):
    work = default_run.path
    config = default_run.config()
    assert (
        config["evaluate"]["stage_ablations"] is True
        and config["models"]["synthetic"]["source"] == "synthetic"
    )
    return work, default_run.output


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.workflow
def test_select_keeps_planted_and_rejects_redundant_and_dead(demo):
    work, _ = demo
    truth = {int(r["neuron"]): r for r in _csv(work / RUN / "truth.csv")}
    sel = json.loads((work / "results/synthetic/synthetic/select/summary.json").read_text())
    for n in load_world().neurons:
        selected = sel["neurons"][str(n.index)]["selected"]
        assert selected == (n.kind in ("detector", "polysemantic", "attribute")), n
        assert truth[n.index]["selected"] == ("true" if selected else "false")
        assert truth[n.index]["kind"] == n.kind


@pytest.mark.workflow
def test_polysemantic_neurons_get_two_clusters_one_concept_each(demo):
    work, _ = demo
    for n in load_world().neurons:
        if n.kind != "polysemantic":
            continue
        clusters = json.loads((work / f"results/synthetic/synthetic/clusters/{n.index}.json").read_text())
        assert clusters["k"] == 2
        hyp = json.loads((work / RUN / "hypotheses" / f"{n.index}.json").read_text())
        tops = [c["concepts"][0]["text"] for c in hyp["clusters"]]
        assert sorted(tops) == sorted(n.concepts)


@pytest.mark.workflow
def test_planted_concepts_are_recovered_and_wrong_hypotheses_rejected(demo):
    work, _ = demo
    summary = json.loads((work / RUN / "truth_summary.json").read_text())
    assert summary["recovery"] >= 0.9
    assert summary["select_correct"] is True
    h = summary["hypotheses"]
    assert h["n_wrong"] > 0 and h["mean_ar_wrong"] < summary["mean_ar_initial"] < h["mean_ar_right"]
    assert h["n_wrong_kept"] == 0
    ar = _csv(work / RUN / "verify/ar.csv")
    planted = {n.index: n.concepts for n in load_world().neurons}
    # "red" for the "red circle" detector: drawn in a random shape, it rarely fires the neuron
    wrong = [r for r in ar if int(r["neuron"]) == 0 and r["concept"] == "red"]
    assert wrong and all(float(r["ar"]) < 0.6 and r["kept"] == "0" for r in wrong)
    for r in ar:
        if r["concept"] in planted[int(r["neuron"])]:
            assert float(r["ar"]) >= 0.9 and r["kept"] == "1"


@pytest.mark.workflow
def test_stage_ablation_table(demo):
    work, _ = demo
    table = json.loads(
        (work / "results/stage_ablations/synthetic/synthetic/synthetic/ablations.json").read_text()
    )
    rows = {r["variant"]: r for r in table["variants"]}
    assert set(rows) == {"full", "no_select", "no_cluster", "no_verify", "none"}
    full = rows["full"]
    assert full["recovery"] == json.loads((work / RUN / "truth_summary.json").read_text())["recovery"]
    assert rows["no_verify"]["mean_ar"] < full["mean_ar"]
    assert rows["no_verify"]["n_wrong_kept"] > 0 and full["n_wrong_kept"] == 0
    assert rows["no_select"]["n_selected"] > full["n_selected"]
    assert rows["no_select"]["mean_ar_initial"] < full["mean_ar_initial"]
    assert rows["no_cluster"]["n_hypotheses"] < full["n_hypotheses"]
    # none of the three: every neuron (no Select), one cluster each (no Cluster), everything kept (no Verify)
    none = rows["none"]
    assert none["n_selected"] == rows["no_select"]["n_selected"] and none["n_kept"] == none["n_hypotheses"]
    assert none["n_wrong_kept"] > 0 and none["mean_ar"] < full["mean_ar"]


@pytest.mark.workflow
def test_report_shows_the_truth_and_a_rerun_does_nothing(demo, default_run_copy):
    work, output = demo
    html = (work / "results/report/index.html").read_text(encoding="utf-8")
    assert "Planted truth" in html
    assert "results/report/index.html" in output
    again = run_snakemake(default_run_copy)  # (on a copy: the shared run is never written to)
    assert sum(jobs_run(again).values()) == 0
