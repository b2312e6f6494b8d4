"""sieve.verify_stats against independent references: a brute-force double loop and scipy's Mann-Whitney U for
the AUC, the definition summed by hand (and scikit-learn where installed) for average precision, the Wilson
formula written out with scipy's normal quantile, on random data and on the edge cases (all tied, no images,
k = 0, k = n); then the control sampler's stability and the filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm

from sieve.verify_stats import (
    DEFAULT_CONTROLS,
    NEUTRAL_PROMPTS,
    Z95,
    ControlPrompt,
    StatsError,
    average_precision,
    control_pool,
    control_rate,
    controls_excluding,
    f1_at_threshold,
    roc_auc,
    sample_controls,
    specificity_keep,
    wilson_interval,
)


def _auc_brute(x, y):
    return sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))


def _ap_by_hand(x, y):
    """Precision at each distinct threshold, weighted by the recall it adds (the definition, loop by loop)."""
    total = 0.0
    prev_recall = 0.0
    for t in sorted(set(x) | set(y), reverse=True):
        tp = sum(a >= t for a in x)
        fp = sum(b >= t for b in y)
        recall = tp / len(x)
        total += (recall - prev_recall) * (tp / (tp + fp))
        prev_recall = recall
    return total


def _cases():
    rng = np.random.default_rng(7)
    out = []
    for _ in range(12):
        n1, n0 = int(rng.integers(1, 25)), int(rng.integers(1, 60))
        # rounded so that ties across and within classes occur, as with ReLU zeros and quantised images
        x = np.round(rng.normal(0.6, 1.0, n1), 1).clip(0)
        y = np.round(rng.normal(0.0, 1.0, n0), 1).clip(0)
        out.append((x, y))
    out += [
        (np.zeros(5), np.zeros(7)),  # all tied: a silent neuron
        (np.ones(3), np.zeros(4)),  # perfect separation
        (np.zeros(3), np.ones(4)),  # perfectly wrong
        (np.array([0.3]), np.array([0.3])),  # one each, tied
        (np.array([1.0, 0.0]), np.array([0.5])),
    ]
    return out


@pytest.mark.parametrize("x, y", _cases())
def test_auc_is_the_mann_whitney_probability(x, y):
    auc = roc_auc(x, y)
    assert auc == pytest.approx(_auc_brute(x, y), abs=1e-12)
    u = mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").statistic
    assert auc == pytest.approx(u / (len(x) * len(y)), abs=1e-12)


@pytest.mark.parametrize("x, y", _cases())
def test_average_precision_is_the_definition(x, y):
    assert average_precision(x, y) == pytest.approx(_ap_by_hand(list(x), list(y)), abs=1e-12)


@pytest.mark.parametrize("x, y", _cases())
def test_scores_match_scikit_learn(x, y):
    metrics = pytest.importorskip("sklearn.metrics")
    scores = np.r_[x, y]
    labels = np.r_[np.ones(len(x)), np.zeros(len(y))]
    assert average_precision(x, y) == pytest.approx(
        metrics.average_precision_score(labels, scores), abs=1e-12
    )
    assert roc_auc(x, y) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    pred = scores > 0.5
    assert f1_at_threshold(x, y, 0.5) == pytest.approx(metrics.f1_score(labels, pred, zero_division=0.0))


def test_edge_values():
    assert roc_auc(np.zeros(5), np.zeros(7)) == 0.5
    assert average_precision(np.zeros(5), np.zeros(7)) == pytest.approx(5 / 12)  # all tied: the prevalence
    assert roc_auc([1, 1], [0, 0, 0]) == 1.0 and average_precision([1, 1], [0, 0, 0]) == 1.0
    assert roc_auc([0, 0], [1, 1]) == 0.0
    assert control_rate([0.1, 0.2, 0.3, 0.4], 0.2) == 0.5  # strictly above, as AR
    assert f1_at_threshold([0.0, 0.0], [1.0], 0.5) == 0.0  # nothing of the concept fires
    # a 2-D column works like a flat one
    assert roc_auc(np.ones((2, 1)), np.zeros((3, 1))) == 1.0


@pytest.mark.parametrize("fn", [roc_auc, average_precision])
def test_no_images_or_bad_values_are_errors(fn):
    with pytest.raises(StatsError, match="no concept activations"):
        fn([], [0.1])
    with pytest.raises(StatsError, match="no control activations"):
        fn([0.1], [])
    with pytest.raises(StatsError, match="not finite"):
        fn([0.1, math.nan], [0.1])
    with pytest.raises(StatsError, match="no control activations"):
        control_rate([], 0.1)


def _wilson_by_hand(k, n):
    z = norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(
    "k, n", [(0, 1), (1, 1), (0, 10), (10, 10), (7, 10), (1, 20), (17, 20), (50, 100), (3, 1000)]
)
def test_wilson_interval_is_the_score_interval(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = _wilson_by_hand(k, n)
    assert low == pytest.approx(max(0.0, ref_low), abs=1e-12)
    assert high == pytest.approx(min(1.0, ref_high), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0
    if k == 0:
        assert low == 0.0
    if k == n:
        assert high == 1.0
    assert Z95 == pytest.approx(norm.ppf(0.975), abs=1e-15)


def test_wilson_interval_known_values():
    # 10 of 10 images: AR = 1 is known only to be above ~0.72; 17 of 20 (AR 0.85) to about +-0.15
    assert wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    low, high = wilson_interval(17, 20)
    assert (low, high) == (pytest.approx(0.6396, abs=1e-4), pytest.approx(0.9476, abs=1e-4))


@pytest.mark.parametrize(
    "k, n, msg",
    [
        (0, 0, "n >= 1"),
        (3, 2, "0 <= k <= n"),
        (-1, 5, "0 <= k <= n"),
        (1.5, 3, "integer"),
        (True, 3, "integer"),
    ],
)
def test_wilson_interval_rejects_bad_counts(k, n, msg):
    with pytest.raises(StatsError, match=msg):
        wilson_interval(k, n)


# ---------------------------------------------------------------------------------------------- the pool


IDS = [f"{i:016x}" for i in range(300)]


def test_sample_is_seeded_and_independent_of_order():
    a = sample_controls(IDS, 20, seed=0)
    assert len(a) == len(set(a)) == 20 and set(a) <= set(IDS)
    assert a == sample_controls(list(reversed(IDS)), 20, seed=0) == sample_controls(IDS + IDS[:5], 20, seed=0)
    assert set(a) != set(sample_controls(IDS, 20, seed=1))
    assert sample_controls(IDS[:7], 20) == sample_controls(IDS[:7], 7)  # a small set is taken whole
    assert sorted(sample_controls(IDS[:7], 20)) == sorted(IDS[:7])
    assert sample_controls(IDS, 0) == []
    assert DEFAULT_CONTROLS == len(sample_controls(IDS))


def test_adding_concepts_moves_the_sample_as_little_as_possible():
    base = sample_controls(IDS, 20)
    for extra in ([f"new{i}" for i in range(1)], [f"new{i}" for i in range(40)]):
        grown = sample_controls(IDS + extra, 20)
        entered = set(grown) - set(base)
        assert entered <= set(extra)  # only new concepts can enter ...
        assert set(base) - set(grown) == set(
            base[len(base) - len(entered) :]
        )  # ... displacing the last ranked
    # removing a concept that is not sampled changes nothing
    unsampled = next(c for c in IDS if c not in base)
    assert sample_controls([c for c in IDS if c != unsampled], 20) == base


@pytest.mark.parametrize("size", [-1, 2.5, True])
def test_bad_pool_size_is_an_error(size):
    with pytest.raises(StatsError, match="verify.controls"):
        sample_controls(IDS, size)


def test_pool_holds_the_sample_then_the_neutral_prompts():
    concepts = {c: f"text {c}" for c in IDS}
    pool = control_pool(concepts, 5, seed=3)
    assert [p.concept_id for p in pool[:5]] == sample_controls(IDS, 5, seed=3)
    assert [p.text for p in pool[:5]] == [concepts[c] for c in sample_controls(IDS, 5, seed=3)]
    assert [p.text for p in pool[5:]] == list(NEUTRAL_PROMPTS) and all(p.neutral for p in pool[5:])
    assert [p.text for p in control_pool(concepts, 1, neutral=["x", "x", " "])[1:]] == ["x"]


def test_controls_exclude_the_concepts_own_images():
    pool = [ControlPrompt("a", "red"), ControlPrompt("b", "blue"), ControlPrompt(None, "a photo")]
    acts = [np.full((2, 3), 1.0), np.full((3, 3), 2.0), np.full((1, 3), 3.0)]
    assert controls_excluding(pool, acts).shape == (6, 3)
    assert controls_excluding(pool, acts, concept_id="a")[:, 0].tolist() == [2, 2, 2, 3]
    # the same prompt is the same pictures, whatever the id
    assert controls_excluding(pool, acts, prompt="a photo of a blue", template="a photo of a {}")[
        :, 0
    ].tolist() == [1, 1, 3]
    assert controls_excluding(pool, acts, prompt="a photo")[:, 0].tolist() == [1, 1, 2, 2, 2]
    # a control naming every word of the hypothesis shows it: "red" is not scored against a red triangle
    pool3 = [ControlPrompt("t", "Red  triangle"), ControlPrompt("c", "circle"), ControlPrompt("r", "redwood")]
    acts3 = [np.array([1.0]), np.array([2.0]), np.array([3.0])]
    assert controls_excluding(pool3, acts3, text="red").tolist() == [2, 3]
    assert controls_excluding(pool3, acts3, text="red circle").tolist() == [1, 2, 3]
    assert controls_excluding(pool3, acts3, text="triangle, red").tolist() == [2, 3]
    assert controls_excluding(pool3, acts3, text="").tolist() == [1, 2, 3]
    with pytest.raises(StatsError, match="2 activation arrays"):
        controls_excluding(pool, acts[:2])
    with pytest.raises(StatsError, match="raise verify.controls"):
        controls_excluding(pool[:1], acts[:1], concept_id="a")


def test_specificity_filter_needs_both_rules():
    paper = np.array([True, True, False, False])
    rate = np.array([0.1, 0.7, 0.1, math.nan])
    assert specificity_keep(paper, rate).tolist() == [True, False, False, False]
    assert specificity_keep(paper, rate, 0.7).tolist() == [True, True, False, False]  # equal is kept
    assert specificity_keep(paper, rate, 0.05).tolist() == [False, False, False, False]
    with pytest.raises(StatsError, match="no control rate"):
        specificity_keep([True], [math.nan])
    with pytest.raises(StatsError, match="max_control_rate"):
        specificity_keep(paper, rate, 1.5)
    with pytest.raises(StatsError, match="4 control rates"):
        specificity_keep(paper[:3], rate)
