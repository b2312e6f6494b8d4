"""Selection math against a plain numpy reference, with planted selective, dead, flat and negative neurons."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sieve.select import ratio_histogram, run_select, select_neurons, selectivity


def planted(n: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    acts = np.zeros((n, 6), dtype=np.float32)
    acts[:, 0] = rng.uniform(0.9, 1.1, n)  # flat: ratio ~1
    sel = rng.uniform(0.05, 0.15, n)
    sel[rng.choice(n, 40, replace=False)] = rng.uniform(5, 8, 40)  # 2% strong responses
    acts[:, 1] = sel  # selective
    acts[:, 2] = 0.0  # dead
    sparse = np.zeros(n)
    sparse[rng.choice(n, 50, replace=False)] = 3.0
    acts[:, 3] = sparse  # median 0, p99 > 0: maximally selective
    acts[:, 4] = rng.normal(0, 1, n)  # signed (ViT-like), median ~0
    acts[:, 5] = -np.abs(rng.normal(0, 1, n))  # never positive: dead under clip
    return acts


def reference(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The definition, spelled out per neuron with plain numpy."""
    p99s, meds, ratios = [], [], []
    for c in range(acts.shape[1]):
        a = np.maximum(acts[:, c].astype(np.float64), 0)
        p99 = np.percentile(a, 99)
        med = np.percentile(a, 50)
        p99s.append(p99)
        meds.append(med)
        ratios.append(0.0 if p99 <= 0 else (math.inf if med == 0 else p99 / med))
    return np.array(p99s), np.array(meds), np.array(ratios)


def test_selectivity_matches_numpy_reference() -> None:
    acts = planted()
    stats = selectivity(acts, negative="clip")
    p99, med, ratio = reference(acts)
    np.testing.assert_allclose(stats["p99"], p99)
    np.testing.assert_allclose(stats["median"], med)
    np.testing.assert_array_equal(np.isinf(stats["ratio"]), np.isinf(ratio))
    fin = np.isfinite(ratio)
    np.testing.assert_allclose(stats["ratio"][fin], ratio[fin])
    np.testing.assert_allclose(stats["threshold"], np.percentile(acts, 99, axis=0))


def test_selection_rule_and_edge_cases() -> None:
    stats = selectivity(np.clip(planted(), 0, None))  # a ReLU layer: auto leaves it untouched
    mask = select_neurons(stats, tau=10)
    assert mask.tolist() == [False, True, False, True, True, False]
    assert stats["ratio"][0] == pytest.approx(1.1 / 1.0, rel=0.1)
    assert stats["dead"].tolist() == [False, False, True, False, False, True]
    # clipped at 0, the signed neuron 4 has median ~0 and a huge ratio: why signed layers are shifted
    assert stats["ratio"][4] > 10
    assert math.isinf(stats["ratio"][3])  # median 0 with p99 > 0
    assert select_neurons(stats, tau=1e12)[3]  # selected for any tau
    # the no-Select ablation keeps every neuron that is not dead
    assert select_neurons(stats, tau=10, enabled=False).tolist() == [True, True, False, True, True, False]


def test_signed_layer_auto_is_exp() -> None:
    """On a layer with any negative value, auto is the paper's ratio on exp(x / sd): exp((p99 - median) / sd),
    the same for a neuron moved or scaled (a logit's zero and unit mean nothing); constant neurons are dead."""
    acts = planted()  # neurons 4 and 5 take negative values
    auto, exp = selectivity(acts), selectivity(acts, negative="exp")
    for key in ("p99", "median", "ratio", "dead", "threshold"):
        np.testing.assert_array_equal(auto[key], exp[key])
    for c in range(acts.shape[1]):
        x = acts[:, c].astype(np.float64)
        p99, med = np.percentile(x, 99), np.percentile(x, 50)
        if x.std() == 0:
            assert auto["dead"][c] and auto["ratio"][c] == 0  # neuron 2: constant
        else:
            assert auto["ratio"][c] == pytest.approx(math.exp((p99 - med) / x.std()))
    assert auto["dead"].tolist() == [False, False, True, False, False, False]
    # a Gaussian neuron: exp(2.33) ~ 10.2, at tau 10's edge; a sparse strong positive tail stands far out
    assert 8 < auto["ratio"][4] < 13
    rng = np.random.default_rng(1)
    tail = rng.normal(0, 0.1, 3000)
    tail[:60] = 20
    stats = selectivity(np.stack([tail, -np.abs(tail), 3.0 * tail - 7.0], 1))
    assert stats["ratio"][0] > 1000 and stats["ratio"][2] == pytest.approx(stats["ratio"][0])
    assert select_neurons(stats, tau=10).tolist() == [True, False, True]


def test_auto_on_a_non_negative_layer_is_the_papers_ratio_exactly() -> None:
    acts = np.clip(planted(), 0, None).astype(np.float64)
    auto, clip, raw = selectivity(acts), selectivity(acts, negative="clip"), selectivity(acts, negative="raw")
    for key in ("p99", "median", "ratio", "dead", "threshold"):
        np.testing.assert_array_equal(auto[key], clip[key])
        np.testing.assert_array_equal(auto[key], raw[key])
    fin = np.isfinite(auto["ratio"]) & ~auto["dead"]
    np.testing.assert_array_equal(
        auto["ratio"][fin], np.percentile(acts, 99, axis=0)[fin] / np.percentile(acts, 50, axis=0)[fin]
    )


def test_negative_shift_rule() -> None:
    acts = planted()
    stats = selectivity(acts, negative="shift")
    shifted = acts[:, 4] - acts[:, 4].min()
    assert stats["p99"][4] == pytest.approx(np.percentile(shifted, 99))
    assert not stats["dead"][5]  # shifting makes the never-positive neuron measurable
    with pytest.raises(ValueError, match="negative"):
        selectivity(acts, negative="abs")


def test_run_select_writes_strict_json(tmp_path) -> None:
    acts = planted(500)
    n, c = acts.shape
    k = 4
    order = np.argsort(-acts, axis=0, kind="stable")[:k].T
    data = {
        "activations": acts,
        "images": [f"img{i}.png" for i in range(n)],
        "probe_index": np.arange(n) + 100,
        "topk_index": order,
        "topk_value": np.take_along_axis(acts.T, order, axis=1),
        "attrs": {"model": "m", "layer": "layer4", "probe": "p"},
    }
    summary = run_select(
        data, tmp_path / "summary.json", tmp_path / "neurons", tau=10, top_n=k, negative="clip"
    )
    text = (tmp_path / "summary.json").read_text()
    parsed = json.loads(text, parse_constant=lambda s: pytest.fail(f"non-strict JSON literal {s}"))
    assert parsed["n_selected"] == 3 and summary["n_dead"] == 2  # 1, 3 and the clipped signed 4
    assert parsed["neurons"]["3"]["ratio"] == "inf" and float(parsed["neurons"]["3"]["ratio"]) == math.inf
    assert sorted(p.name for p in (tmp_path / "neurons").iterdir()) == ["1.json", "3.json", "4.json"]
    n1 = json.loads((tmp_path / "neurons" / "1.json").read_text())
    assert n1["threshold"] == pytest.approx(np.percentile(acts[:, 1], 99))
    assert [t["index"] for t in n1["top"]] == order[1].tolist()
    assert (
        n1["top"][0]["path"] == f"img{order[1, 0]}.png" and n1["top"][0]["probe_index"] == order[1, 0] + 100
    )
    assert n1["top"][0]["activation"] == pytest.approx(acts[:, 1].max())
    ratio_histogram(parsed, str(tmp_path / "hist.png"))
    assert (tmp_path / "hist.png").stat().st_size > 1000
