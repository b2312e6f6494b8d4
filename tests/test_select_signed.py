"""``negative: raw``: the paper's p99 / median on the values as they are, for signed layers."""

from __future__ import annotations

import json

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
    with pytest.raises(ValueError, match="'auto', 'exp', 'clip', 'shift' or 'raw', not 'abs'"):
        selectivity(np.ones((10, 2)), negative="abs")


def _run(tmp_path, acts: np.ndarray, tau: float = 10.0, **kw) -> dict:
    """run_select on ``acts`` with a minimal activations dict (top images: the first rows)."""
    from sieve.select import run_select

    n, c = acts.shape
    activations = {
        "activations": acts,
        "images": [f"img{i}.png" for i in range(n)],
        "probe_index": np.arange(n),
        "topk_index": np.tile(np.arange(20), (c, 1)),
        "topk_value": np.ones((c, 20)),
        "attrs": {"model": "m", "layer": "fc"},
    }
    return run_select(activations, str(tmp_path / "summary.json"), str(tmp_path / "neurons"), tau=tau, **kw)


def test_no_neuron_selected_warns_with_the_taus_for_10_and_90_percent(tmp_path, caplog) -> None:
    rng = np.random.default_rng(3)
    acts = rng.uniform(1.0, 3.0, (500, 40)) * rng.uniform(1, 2, 40)  # flat, positive: ratios 1.5 to 2
    with caplog.at_level("WARNING", logger="sieve.select"):
        summary = _run(tmp_path, acts)
    deg = summary["degenerate"]
    assert summary["n_selected"] == 0 and deg["kind"] == "none"
    stats = selectivity(acts, negative="clip")
    assert select_neurons(stats, deg["tau_selecting_10pct"]).sum() == 4
    assert select_neurons(stats, deg["tau_selecting_90pct"]).sum() == 36
    assert 1 < deg["tau_selecting_90pct"] < deg["tau_selecting_10pct"] < 2.1
    assert f"tau {deg['tau_selecting_10pct']:.4g} would select 10%" in deg["message"]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"select: {deg['message']}"
    ]
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["degenerate"] == deg


def test_every_live_neuron_selected_warns_and_says_when_no_tau_can(tmp_path) -> None:
    rng = np.random.default_rng(4)
    acts = np.zeros((400, 10))
    acts[rng.random((400, 10)) < 0.05] = 2.0  # median 0 everywhere: infinite ratios, selected at any tau
    acts[:, 9] = 0.0  # dead
    deg = _run(tmp_path, acts)["degenerate"]
    assert deg["kind"] == "all" and deg["tau_selecting_10pct"] is None and deg["tau_selecting_90pct"] is None
    assert "every neuron that is not dead (9) of 10 selected" in deg["message"]
    assert "no tau selects 10% (9 neurons have median 0" in deg["message"]


def test_a_useful_selection_and_the_no_select_ablation_do_not_warn(tmp_path) -> None:
    rng = np.random.default_rng(5)
    acts = rng.uniform(0.9, 1.1, (500, 4))
    acts[:10, 0] = 50.0  # one selective neuron
    assert "degenerate" not in _run(tmp_path / "a", acts)
    assert "degenerate" not in _run(tmp_path / "b", acts, enabled=False)  # every neuron kept on purpose
