"""The numbers the docs quote from a run are the run's: the quick start's config.yaml, run as is (the planted
world, 600 probe images), and every figure that docs/synthetic-world.md ("What the default world shows") and
docs/evaluation.md (the stage-ablation table) give for it, read from the docs' text and compared with
truth_summary.json and ablations.json. Editing the world, the config or a stage without updating the docs
fails here, naming the figure. (tests/test_demo.py checks the world's properties on the same shared run.)
"""

from __future__ import annotations

import json
import re

import pytest

from helpers import REPO

pytestmark = [pytest.mark.workflow, pytest.mark.slow]

TRUTH = "results/synthetic/synthetic/synthetic/truth_summary.json"
ABLATIONS = "results/stage_ablations/synthetic/synthetic/synthetic/ablations.json"
# the stage-ablation table's columns (docs/evaluation.md) and the keys of ablations.json's rows they show
TABLE_COLUMNS = {
    "hypotheses": "n_hypotheses",
    "kept": "n_kept",
    "mean AR initial": "mean_ar_initial",
    "mean AR reported": "mean_ar",
    "recovery": "recovery",
    "wrong kept": "n_wrong_kept",
}


def _doc(name: str) -> str:
    """A doc's text with every run of whitespace as one space (sentences wrap anywhere)."""
    return re.sub(r"\s+", " ", (REPO / "docs" / name).read_text(encoding="utf-8"))


def _quoted(pattern: str, text: str, where: str) -> dict[str, str]:
    m = re.search(pattern, text)
    assert m, f"{where}: the sentence with the run's numbers changed; update tests/test_documented_numbers.py"
    return m.groupdict()


@pytest.fixture
def run_numbers(default_run) -> tuple[dict, dict]:
    """truth_summary.json and ablations.json of config.yaml, run as the quick start runs it (the shared run of
    tests/conftest.py)."""
    return json.loads((default_run.path / TRUTH).read_text()), json.loads(
        (default_run.path / ABLATIONS).read_text()
    )


@pytest.mark.timeout(2400)
def test_synthetic_world_numbers_are_the_runs(run_numbers):
    truth, _ = run_numbers
    text = _doc("synthetic-world.md")
    doc = _quoted(
        r"The default world has (?P<n_neurons>\d+) neurons: (?P<detector>\d+) detectors, (?P<polysemantic>\d+) "
        r"polysemantic, (?P<attribute>\d+) attribute, (?P<redundant>\d+) redundant and (?P<dead>\d+) dead, "
        r"(?P<planted>\d+) planted concepts in all\..*?Select keeps the (?P<selected>\d+) planted neurons and "
        r"rejects the (?P<redundant_rejected>\d+) redundant and (?P<dead_rejected>\d+) dead ones; all "
        r"(?P<recovered>\d+) planted concepts are verified \(`recovery` (?P<recovery>[\d.]+), every right "
        r"hypothesis at AR (?P<ar_right>[\d.]+)\); the (?P<wrong>\d+) wrong hypotheses \(mean AR "
        r"(?P<ar_wrong>[\d.]+)\) are all rejected\. CLIP-Dissect, in the same file, recovers "
        r"(?P<cd_recovered>\d+) of the (?P<cd_planted>\d+)\.",
        text,
        "docs/synthetic-world.md",
    )
    kinds, hyp, cd = truth["kinds"], truth["hypotheses"], truth["clip_dissect"]
    run = {
        "n_neurons": truth["n_neurons"],
        "planted": truth["n_planted_concepts"],
        **{
            kind: kinds[kind]["count"]
            for kind in ("detector", "polysemantic", "attribute", "redundant", "dead")
        },
        "selected": sum(kinds[k]["selected"] for k in ("detector", "polysemantic", "attribute")),
        "redundant_rejected": kinds["redundant"]["count"] - kinds["redundant"]["selected"],
        "dead_rejected": kinds["dead"]["count"] - kinds["dead"]["selected"],
        "recovered": truth["n_recovered_concepts"],
        "recovery": truth["recovery"],
        "ar_right": hyp["mean_ar_right"],
        "wrong": hyp["n_wrong"],
        "ar_wrong": hyp["mean_ar_wrong"],
        "cd_recovered": cd["n_recovered_concepts"],
        "cd_planted": cd["n_planted_concepts"],
    }
    for key, quoted in doc.items():
        where = f"docs/synthetic-world.md: {key} is {quoted}, the run says {run[key]}"
        assert float(quoted) == pytest.approx(run[key], abs=0.005 + 1e-9), where
    assert hyp["n_wrong_kept"] == 0  # "are all rejected"
    assert kinds["detector"]["selected"] == kinds["detector"]["count"] and truth["select_correct"]


@pytest.mark.timeout(2400)
def test_stage_ablation_table_is_the_runs(run_numbers):
    _, table = run_numbers
    text = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
    header = "| variant | " + " | ".join(TABLE_COLUMNS) + " |"
    assert header in text, f"docs/evaluation.md: the stage-ablation table's header is not {header!r}"
    rows = re.findall(
        r"^\| (?!variant|---)(.+?) \| (.+) \|$", text.split(header, 1)[1].split("\n\n", 1)[0], re.M
    )
    by_label = {v["label"]: v for v in table["variants"]}
    assert [label for label, _ in rows] == list(by_label), "docs/evaluation.md: the table's variants"
    for label, cells in rows:
        for (column, key), cell in zip(TABLE_COLUMNS.items(), cells.split(" | "), strict=True):
            value = by_label[label][key]
            where = f"docs/evaluation.md, {label} / {column}: {cell}, the run says {value}"
            if isinstance(value, float):  # "rounded to two digits" (0.705 may be written 0.70 or 0.71)
                assert float(cell) == pytest.approx(value, abs=0.005 + 1e-9), where
            else:
                assert cell == str(value), where
    no_verify = _quoted(
        r"without Verify, (?P<n>\d+) wrong hypotheses are reported",
        _doc("evaluation.md"),
        "docs/evaluation.md",
    )
    assert int(no_verify["n"]) == by_label["no Verify"]["n_wrong_kept"]
