"""The report's view of Verify's control scores (issue 13): the AR-versus-control-rate scatter of each method,
the card's interval and control rate, and both filters in the comparison table, from the fake results tree of
tests/report_fixtures.py (whose ar.csv has every column Verify writes)."""

from __future__ import annotations

import csv

import pytest
from report_fixtures import make_results

from sieve.report import build_report


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of a fake tree (one model, probe and concept set, with the CLIP-Dissect baseline) and its data."""
    root = tmp_path_factory.mktemp("report_controls")
    make_results(root, n_neurons=12, concept_sets=("words",))
    out = root / "results" / "report"
    data = build_report(
        out / "index.html", out / "assets", models=["toy"], probes=["pics"], concept_sets=["words"],
        results=root / "results", benchmarks=root / "benchmarks", comparison_csv=out / "comparison.csv",
    )  # fmt: skip
    return root, data


def _ar(root, run, sub=""):
    with open(root / "results" / run / sub / "verify/ar.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_scatter_points_are_the_ar_csv_rows(page):
    root, data = page
    run = data["runs"][0]
    rows = _ar(root, run["key"].replace(" / ", "/"))
    panel = run["control"]["sieve"]
    assert panel["max_control_rate"] == 0.35 and panel["filter"] == "paper"
    assert sorted((p[3], p[4], p[0], p[1], p[2]) for p in panel["points"]) == sorted(
        (
            r["neuron"],
            r["concept"],
            round(float(r["ar"]), 4),
            round(float(r["control_rate"]), 4),
            int(r["kept"]),
        )
        for r in rows
    )
    assert "clip_dissect" in run["control"]  # one scatter per method


def test_card_hypotheses_carry_interval_control_rate_and_both_verdicts(page):
    root, data = page
    run = data["runs"][0]
    rows = {(r["neuron"], r["concept"]): r for r in _ar(root, run["key"].replace(" / ", "/"))}
    seen = 0
    for nid, card in run["cards"].items():
        for cluster in card["clusters"]:
            for h in cluster["concepts"]:
                r = rows[(nid, h["text"])]
                assert h["ar_low"] == pytest.approx(float(r["ar_low"]), abs=1e-4)
                assert h["ar_high"] == pytest.approx(float(r["ar_high"]), abs=1e-4)
                assert h["control_rate"] == pytest.approx(float(r["control_rate"]), abs=1e-4)
                assert h["kept_specificity"] == (r["kept_specificity"] == "1")
                seen += 1
    assert seen > 0


def test_comparison_table_shows_both_filters(page):
    root, data = page
    table = data["comparison"]
    cols = table["columns"]
    for c in ("filter", "kept (paper)", "kept (specificity)", "verified (paper)", "verified (specificity)",
              "wrong kept (paper)", "wrong kept (specificity)"):  # fmt: skip
        assert c in cols
    sieve = next(r for r in table["rows"] if r[cols.index("method")] == "sieve")
    rows = _ar(root, "/".join(sieve[:3]))
    assert sieve[cols.index("kept (paper)")] == sum(r["kept_paper"] == "1" for r in rows)
    assert sieve[cols.index("kept (specificity)")] == sum(r["kept_specificity"] == "1" for r in rows)
    assert sieve[cols.index("wrong kept (paper)")] == 1 and sieve[cols.index("wrong kept (specificity)")] == 0
    with open(root / "results/report/comparison.csv", newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == cols
