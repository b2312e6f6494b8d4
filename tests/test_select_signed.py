"""``negative: raw``: the paper's p99 / median on the values as they are, for signed layers."""

from __future__ import annotations

import numpy as np
import pytest

from sieve.select import select_neurons, selectivity


def test_raw_is_the_paper_ratio_and_never_selects_a_negative_median() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    acts = np.empty((n, 4))
    acts[:, 0] = rng.normal(1.0, 0.05, n)  # positive median, flat: ratio ~1.1
    sel = rng.normal(0.1, 0.02, n)
    sel[:20] = 5.0  # 2% strong responses over a small positive median
    acts[:, 1] = sel
    acts[:, 2] = rng.normal(-1.0, 0.3, n)  # a logit that is mostly negative
    acts[:, 2][:20] = 8.0  # ... with a strong top 1%: still never selected
    acts[:, 3] = -np.abs(rng.normal(0, 1, n))  # never positive: dead
    stats = selectivity(acts, negative="raw")
    p99, med = np.percentile(acts, [99, 50], axis=0)
    np.testing.assert_allclose(stats["p99"], p99)
    np.testing.assert_allclose(stats["median"], med)
    np.testing.assert_allclose(stats["ratio"][:2], p99[:2] / med[:2])
    assert stats["ratio"][1] == pytest.approx(5.0 / 0.1, rel=0.1)
    assert stats["ratio"][2] == 0.0 and not stats["dead"][2]  # negative median: ratio 0, not dead
    assert stats["dead"].tolist() == [False, False, False, True]
    assert select_neurons(stats, tau=10).tolist() == [False, True, False, False]
    # clip (median 0 after clipping) and shift (min -> 0) both select that mostly-negative neuron
    assert selectivity(acts, negative="clip")["ratio"][2] == np.inf
    assert selectivity(acts, negative="shift")["ratio"][2] > 10


def test_raw_equals_clip_on_a_non_negative_layer() -> None:
    rng = np.random.default_rng(1)
    acts = np.maximum(rng.normal(0, 1, (800, 6)), 0)  # ReLU: medians 0 and above, some exactly 0
    acts[:, 1] = rng.uniform(0.5, 1.5, 800)
    acts[:, 2] = 0.0
    raw, clip = selectivity(acts, negative="raw"), selectivity(acts, negative="clip")
    for key in ("p99", "median", "ratio", "dead", "threshold"):
        np.testing.assert_array_equal(raw[key], clip[key])
    assert np.isinf(raw["ratio"][0]) and raw["dead"][2]


def test_unknown_treatment_names_the_choices() -> None:
    with pytest.raises(ValueError, match="'auto', 'clip', 'shift' or 'raw', not 'abs'"):
        selectivity(np.ones((10, 2)), negative="abs")
