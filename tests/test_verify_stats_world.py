"""Verify's specificity scores on the planted world, unit by unit (renderer and model directly, no Snakemake):
the promiscuous neuron kind passes Select and gets a high AR on any concept, and the control rate is what the
specificity filter rejects it by, while detectors pass both; plus the two sanity checks of Oikarinen, Yan and
Weng (ICML 2025) on the precision-style score. The measurement on a real run with Select disabled is
tests/test_verify_stats_run.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.concepts import concept_id
from sieve.select import select_neurons, selectivity
from sieve.synthetic import load_world, planted_truth
from sieve.synthetic.model import LARGE_OBJECT
from sieve.synthetic.world import SpecError, render_prompt, resolve_spec_path
from sieve.verify_stats import (
    control_pool,
    control_rate,
    controls_excluding,
    f1_at_threshold,
    roc_auc,
    specificity_keep,
    wilson_interval,
)

SEEDS = list(range(10))
DEFAULT = load_world()


@pytest.fixture(scope="module")
def world_spec(tmp_path_factory):
    """The default world's neurons plus one promiscuous neuron, last."""
    raw = yaml.safe_load(open(resolve_spec_path(DEFAULT.source), encoding="utf-8"))
    raw["neurons"].append({"kind": "promiscuous"})
    path = tmp_path_factory.mktemp("world") / "promiscuous.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


@pytest.fixture(scope="module")
def world(world_spec):
    return load_world(world_spec)


@pytest.fixture(scope="module")
def model(world_spec):
    return load_model("w", {"source": "synthetic", "spec": world_spec, "layer": "penultimate"})


def _pooled(model, x):
    with torch.no_grad():
        return model.activations(model.preprocess.normalize(x))[0].numpy().astype(np.float64)


def _prompt_acts(model, world, prompt, seeds=SEEDS):
    x = np.stack([render_prompt(world, prompt, s)[0] for s in seeds])
    return _pooled(model, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)


@pytest.fixture(scope="module")
def probe_stats(model, world_spec):
    probe = open_image_set("synthetic", {"kind": "synthetic", "n_images": 160, "seed": 0, "spec": world_spec})
    x = (
        torch.from_numpy(np.stack([np.asarray(probe.load(i)) for i in range(len(probe))])).permute(0, 3, 1, 2)
        / 255
    )
    acts = np.concatenate([_pooled(model, x[i : i + 40]) for i in range(0, len(x), 40)])
    return selectivity(acts), acts


@pytest.fixture(scope="module")
def pool(model, world):
    entries = control_pool({concept_id(t): t for t in world.concept_list()})
    return entries, [_prompt_acts(model, world, e.text) for e in entries]


def _scores(model, world, pool, neuron, concept, threshold):
    entries, acts = pool
    x = _prompt_acts(model, world, concept)[:, neuron]
    y = controls_excluding(entries, acts, concept_id=concept_id(concept), prompt=concept, text=concept)[
        :, neuron
    ]
    k = int(np.count_nonzero(x > threshold))
    return {
        "ar": k / x.size,
        "interval": wilson_interval(k, x.size),
        "control_rate": control_rate(y, threshold),
        "auc": roc_auc(x, y),
        "f1": f1_at_threshold(x, y, threshold),
    }


# ------------------------------------------------------------------------------------------------ the kind


def test_promiscuous_is_a_kind_without_concepts(world, world_spec, tmp_path):
    assert world.neurons[-1].kind == "promiscuous" and world.neurons[-1].concepts == ()
    assert planted_truth(world_spec)[-1] == {
        "neuron": len(world.neurons) - 1,
        "kind": "promiscuous",
        "concepts": [],
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"neurons": [{"kind": "promiscuous", "concept": "red circle"}]}))
    with pytest.raises(SpecError, match=r"neurons\[0\].*promiscuous neuron has no concept"):
        load_world(str(bad))


def test_default_world_has_no_large_object_channel(model):
    """The channel exists only in a world that reads it, so the default model computes exactly as before."""
    plain = load_model("synthetic", {"source": "synthetic", "layer": "penultimate"})
    assert LARGE_OBJECT not in plain.model.channels and plain.model.channels[-1] != LARGE_OBJECT
    assert model.model.channels == [*plain.model.channels, LARGE_OBJECT]
    assert model.n_neurons == plain.n_neurons + 1
    x = torch.from_numpy(np.stack([render_prompt(DEFAULT, c, 0)[0] for c in DEFAULT.concept_list()]))
    x = x.permute(0, 3, 1, 2).float() / 255
    # the other neurons respond as in the default world
    assert np.allclose(_pooled(model, x)[:, :-1], _pooled(plain, x), atol=1e-6)


def test_promiscuous_neuron_passes_select(probe_stats, world):
    stats, acts = probe_stats
    p = len(world.neurons) - 1
    kept = select_neurons(stats, tau=10.0)
    assert kept[p], stats["ratio"][p]
    assert stats["median"][p] == 0 and stats["threshold"][p] > 0
    assert 0.2 < np.mean(acts[:, p] > 0) < 0.5  # fires on the scenes holding a large object
    for n in world.neurons[:-1]:
        assert kept[n.index] == (n.kind in ("detector", "polysemantic", "attribute"))


# ------------------------------------------------------------------------------- AR verifies, controls reject

CONCEPTS = [
    "red circle",
    "blue star",
    "green triangle",
    "yellow square",
    "stripes",
    "dots",
    "purple",
    "square",
]


def test_ar_verifies_the_promiscuous_neuron_and_the_control_rate_rejects_it(model, world, probe_stats, pool):
    stats, _ = probe_stats
    p = len(world.neurons) - 1
    thr = float(stats["threshold"][p])
    scores = [_scores(model, world, pool, p, c, thr) for c in CONCEPTS]
    assert all(s["ar"] == 1.0 for s in scores)  # AR alone keeps every one
    assert all(s["interval"][0] > 0.7 for s in scores)
    rates = np.array([s["control_rate"] for s in scores])
    assert (rates > 0.6).all(), rates  # it fires on most controls too
    kept = specificity_keep(np.ones(len(CONCEPTS), bool), rates)
    assert not kept.any()
    assert all(s["f1"] < 0.2 for s in scores)
    # the AUC cannot reject it: a concept it fires hardest on out-ranks every control
    aucs = {c: s["auc"] for c, s in zip(CONCEPTS, scores, strict=True)}
    assert aucs["dots"] > 0.95 and aucs["stripes"] < 0.5


def test_detectors_and_attributes_pass_both_rules(model, world, probe_stats, pool):
    stats, _ = probe_stats
    rows = [
        (n.index, c)
        for n in world.neurons
        if n.kind in ("detector", "polysemantic", "attribute")
        for c in n.concepts
    ]
    scores = [_scores(model, world, pool, n, c, float(stats["threshold"][n])) for n, c in rows]
    assert all(s["ar"] == 1.0 for s in scores), [(r, s["ar"]) for r, s in zip(rows, scores, strict=True)]
    rates = np.array([s["control_rate"] for s in scores])
    assert (rates <= 0.2).all(), rates
    assert specificity_keep(np.ones(len(rows), bool), rates).all()
    assert all(s["auc"] > 0.9 for s in scores)


# ------------------------------------------------------------------------------------------- sanity checks


def test_extra_labels_lower_every_score(model, world, probe_stats, pool):
    """A hypothesis' images replaced by a half-and-half mix with unrelated images scores lower."""
    stats, _ = probe_stats
    n = next(n.index for n in world.neurons if n.concepts == ("red circle",))
    thr = float(stats["threshold"][n])
    entries, acts = pool
    y = controls_excluding(
        entries, acts, concept_id=concept_id("red circle"), prompt="red circle", text="red circle"
    )[:, n]
    clean = _prompt_acts(model, world, "red circle")[:, n]
    mixed = np.r_[clean[:5], _prompt_acts(model, world, "blue square")[:5, n]]
    assert (mixed > thr).mean() < (clean > thr).mean()
    assert roc_auc(mixed, y) < roc_auc(clean, y)
    assert f1_at_threshold(mixed, y, thr) < f1_at_threshold(clean, y, thr)


def test_missing_labels_never_outscore_the_complete_hypothesis(model, world, probe_stats, pool):
    """For an attribute neuron ("blue": any blue object), naming one blue shape must not beat naming blue."""
    stats, _ = probe_stats
    n = next(n for n in world.neurons if n.kind == "attribute")
    colour = n.concepts[0]
    thr = float(stats["threshold"][n.index])
    complete = _scores(model, world, pool, n.index, colour, thr)
    for shape in world.shapes:
        partial = _scores(model, world, pool, n.index, f"{colour} {shape}", thr)
        assert partial["f1"] <= complete["f1"] + 1e-12, (shape, partial["f1"], complete["f1"])


def test_truth_summary_counts_the_promiscuous_kind(world):
    """A promiscuous neuron that Select keeps makes Select incorrect, and its hypotheses are wrong."""
    from sieve.evaluate.truth import PLANTED_COLUMN, truth_summary

    rows = [
        {
            "neuron": n.index,
            "kind": n.kind,
            PLANTED_COLUMN: json.dumps(list(n.concepts)),
            "selected": n.kind != "dead",
            "recovered": bool(n.concepts),
            "n_recovered": len(n.concepts),
        }
        for n in world.neurons
    ]
    p = len(world.neurons) - 1
    ar_rows = [{"neuron": str(p), "concept": "red circle", "ar": "1.0", "kept": "1"}]
    summary = truth_summary(world, rows, ar_rows, {})
    assert list(summary["kinds"]) == [
        "detector",
        "polysemantic",
        "attribute",
        "redundant",
        "promiscuous",
        "dead",
    ]
    assert summary["kinds"]["promiscuous"] == {
        "count": 1,
        "selected": 1,
        "selected_share": 1.0,
        "recovered": None,
        "recovered_share": None,
    }
    assert summary["select_correct"] is False
    assert summary["hypotheses"]["n_wrong_kept"] == 1
