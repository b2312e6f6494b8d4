"""Verify's control pool inside the workflow's own functions (issue 13): the generation requests carry each
concept set's pool once, the Activation Rate step scores every hypothesis against it (columns of ar.csv,
aggregates of summary.json, both filters), and a score never depends on which other hypotheses or concept sets
exist. The tiny generator and model of tests/test_verify.py; no Snakemake."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from test_verify import N_NEURONS, gen_spec, generate_all, reference_pooled, select_summary, write_hyp

from helpers import REPO
from sieve.concepts import concept_id
from sieve.io import read_json, write_json
from sieve.verify import VerifyError
from sieve.verify.activation_rate import AR_COLUMNS, Controls, run_activation_rate
from sieve.verify.controls import concept_set_pool, entry_prompt, pool_prompts
from sieve.verify.requests import run_requests
from sieve.verify_stats import (
    DEFAULT_CONTROLS,
    DEFAULT_MAX_CONTROL_RATE,
    NEUTRAL_PROMPTS,
    control_rate,
    f1_at_threshold,
    is_own_control,
    roc_auc,
    wilson_interval,
)

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
WORDS = ["dog", "cat", "tree", "sky", "car", "boat", "red", "blue", "red car"]
NEUTRAL = ("a photo", "a plain wall")


def write_concepts(path: Path, words: list[str]) -> str:
    """A concepts.json as prepare_concepts writes it (ids are the real concept ids)."""
    write_json(
        path, {"concept_set": path.parent.name, "concepts": [{"id": concept_id(w), "text": w} for w in words]}
    )
    return str(path)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_hyp_ids(folder: Path, neuron: int, texts: list[str]) -> None:
    """A hypotheses file naming concepts by their real ids (as Hypothesize does)."""
    write_hyp(folder, neuron, [texts])
    doc = read_json(folder / f"{neuron}.json")
    for c in doc["clusters"][0]["concepts"]:
        c["id"] = concept_id(c["text"])
    write_json(folder / f"{neuron}.json", doc)


# --------------------------------------------------------------------------------------------- config keys
def test_schema_defaults_are_the_justified_ones() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())["properties"]["verify"]["properties"]
    assert schema["controls"]["default"] == DEFAULT_CONTROLS == 20
    assert schema["max_control_rate"]["default"] == DEFAULT_MAX_CONTROL_RATE == 0.35
    assert tuple(schema["neutral_prompts"]["default"]) == NEUTRAL_PROMPTS
    assert schema["filter"]["default"] == "paper" and schema["control_seed"]["default"] == 0


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        ({"filter": "strict"}, "'strict' is not one of ['paper', 'specificity']"),
        ({"controls": 0}, "0 is less than the minimum of 1"),
        ({"controls": 2.5}, "2.5 is not of type 'integer'"),
        ({"max_control_rate": 1.5}, "1.5 is greater than the maximum of 1"),
        ({"control_seed": -1}, "-1 is less than the minimum of 0"),
        ({"neutral_prompts": ["a photo", "  "]}, "does not match"),
        ({"neutral_prompts": "a photo"}, "is not of type 'array'"),
    ],
)
def test_bad_verify_values_are_errors_naming_the_key(verify: dict, message: str) -> None:
    """The schema check the workflow runs when it is parsed (common.smk: snakemake.utils.validate)."""
    key = next(iter(verify))
    cfg = {**yaml.safe_load((REPO / "config.yaml").read_text()), "verify": verify}
    with pytest.raises(WorkflowError) as err:
        validate(cfg, schema=str(SCHEMA))
    text = str(err.value)
    assert message in text and f"On instance['verify']['{key}']" in text.replace('"', "'"), text


def test_controls_settings_are_checked_in_the_library_too(tmp_path: Path) -> None:
    path = write_concepts(tmp_path / "cs" / "concepts.json", WORDS)
    with pytest.raises(VerifyError, match="verify.filter must be one of paper, specificity, got 'strict'"):
        Controls(path, filter="strict")
    with pytest.raises(VerifyError, match="verify.max_control_rate must be in"):
        Controls(path, max_control_rate=-0.1)


# ---------------------------------------------------------------------------------------------- the pool
def test_requests_carry_each_concept_sets_pool_once(tmp_path: Path) -> None:
    cs1 = write_concepts(tmp_path / "cs1" / "concepts.json", WORDS)
    cs2 = write_concepts(tmp_path / "cs2" / "concepts.json", ["dog", "lamp", "chair"])
    hyp = tmp_path / "cs1" / "hypotheses"
    write_hyp_ids(hyp, 0, ["dog", "zebra"])
    spec = gen_spec()
    req = run_requests(
        [str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], spec["shards"], spec,
        concepts_jsons=[cs1, cs2], controls=4, control_seed=3, neutral_prompts=list(NEUTRAL),
    )  # fmt: skip
    pool1 = concept_set_pool(cs1, 4, 3, NEUTRAL)
    pool2 = concept_set_pool(cs2, 4, 3, NEUTRAL)
    assert len(pool1) == 4 + 2 and len(pool2) == 3 + 2  # a set of 3 concepts is taken whole
    want = {entry_prompt(e, spec["prompt"]) for e in pool1 + pool2}
    got = {c["prompt"]: c for c in req["concepts"]}
    assert {p for p, c in got.items() if c.get("control")} == want
    assert (
        req["n_controls"] == len(want) and "a photo" in got and "a plain wall" in got
    )  # neutral: as is, once
    assert got["a photo"]["texts"] == [] and got["a photo"]["n_hypotheses"] == 0
    # a prompt both a hypothesis and a control is one request (generated once)
    assert got["a photo of dog"]["n_hypotheses"] == 1 and got["a photo of dog"]["control"] is True
    assert got["a photo of zebra"].get("control") is None
    assert req["n_concepts"] == len(want | {"a photo of dog", "a photo of zebra"})
    # a set's pool depends on its own concepts only: not on the other set, nor on the hypotheses
    alone = pool_prompts([cs1], spec["prompt"], 4, 3, NEUTRAL)
    assert {p["prompt"] for p in alone} == {entry_prompt(e, spec["prompt"]) for e in pool1}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """One concept set, three neurons' hypotheses, the pool (4 concepts + 2 neutral prompts) generated and
    measured by the tiny generator and model, and the reference activations of every prompt."""
    root = tmp_path_factory.mktemp("controls")
    concepts = write_concepts(root / "cs" / "concepts.json", WORDS)
    hyp = root / "cs" / "hypotheses"
    write_hyp_ids(hyp, 0, ["dog", "red"])
    write_hyp_ids(hyp, 2, ["sky"])
    write_hyp_ids(hyp, 5, ["red car", "tree"])
    spec = gen_spec()
    extra = root / "cs2" / "hypotheses"
    write_hyp_ids(extra, 1, ["boat", "cat"])  # a second folder, generated in the same requests
    other = write_concepts(root / "cs2" / "concepts.json", ["boat", "cat", "lamp"])
    req = run_requests(
        [str(hyp), str(extra)], str(root / "requests.json"), spec["prompt"], spec["shards"], spec,
        concepts_jsons=[concepts, other], controls=4, control_seed=0, neutral_prompts=list(NEUTRAL),
    )  # fmt: skip
    generate_all(req, spec, root)
    prompts = sorted({c["prompt"] for c in req["concepts"]})
    ref = reference_pooled(prompts, [0, 1, 2, 3])
    thresholds = np.median(ref.reshape(-1, N_NEURONS), axis=0)
    write_json(root / "select.json", select_summary(thresholds, selected={0, 1, 2, 5}))
    return root, concepts, spec, dict(zip(prompts, ref, strict=True)), thresholds


def _run(
    root: Path, concepts: str, spec: dict, name: str, hyp: Path | None = None, enabled: bool = True, **kw
) -> tuple[list, dict]:
    """run_activation_rate over ``hyp`` (default: the fixture's folder) with the fixture's pool settings."""
    out = root / name
    summary = run_activation_rate(
        str(hyp or root / "cs" / "hypotheses"),
        str(root / "select.json"),
        [str(root / "shards" / f"{s}.json") for s in range(spec["shards"])],
        "tiny",
        str(out / "ar.csv"),
        str(out / "summary.json"),
        str(out / "neuron_concepts.csv"),
        enabled=enabled,
        controls=Controls(
            concepts, template=spec["prompt"], controls=4, seed=0, neutral_prompts=NEUTRAL, **kw
        ),
    )
    return read_rows(out / "ar.csv"), summary


def test_scores_match_a_direct_computation_on_the_pool(generated) -> None:
    root, concepts, spec, acts, thresholds = generated
    rows, summary = _run(root, concepts, spec, "direct")
    assert list(rows[0]) == AR_COLUMNS
    pool = concept_set_pool(concepts, 4, 0, NEUTRAL)
    for r in rows:
        n, text = int(r["neuron"]), r["concept"]
        x = acts[f"a photo of {text}"][:, n]
        own = [is_own_control(e, concept_id(text), f"a photo of {text}", text, spec["prompt"]) for e in pool]
        y = np.concatenate(
            [acts[entry_prompt(e, spec["prompt"])][:, n] for e, o in zip(pool, own, strict=True) if not o]
        )
        k = int(np.sum(x > thresholds[n]))
        assert int(r["n_active"]) == k
        assert (float(r["ar_low"]), float(r["ar_high"])) == pytest.approx(wilson_interval(k, x.size))
        assert float(r["control_rate"]) == pytest.approx(control_rate(y, thresholds[n]))
        assert float(r["auc"]) == pytest.approx(roc_auc(x, y))
        assert float(r["f1"]) == pytest.approx(f1_at_threshold(x, y, thresholds[n]))
        assert r["kept"] == r["kept_paper"]  # the default filter is the paper's
        assert r["kept_specificity"] == str(int(r["kept_paper"] == "1" and float(r["control_rate"]) <= 0.35))
    assert summary["control_pool"] == {
        "controls": 4,
        "seed": 0,
        "n_concepts": 4,
        "n_neutral": 2,
        "n_images": 24,
    }
    assert summary["filter"] == "paper" and summary["max_control_rate"] == 0.35
    assert summary["mean_control_rate"] == pytest.approx(np.mean([float(r["control_rate"]) for r in rows]))
    for name in ("paper", "specificity"):
        assert summary["filters"][name]["n_kept"] == sum(r[f"kept_{name}"] == "1" for r in rows)
    assert summary["n_kept"] == summary["filters"]["paper"]["n_kept"]
    assert summary["mean_ar_kept"] == summary["filters"]["paper"]["mean_ar_kept"]


def test_the_specificity_filter_sets_kept_and_the_neuron_table(generated) -> None:
    root, concepts, spec, _, _ = generated
    paper, _ = _run(root, concepts, spec, "paper")
    rows, summary = _run(root, concepts, spec, "strict", filter="specificity", max_control_rate=0.0)
    assert [{k: v for k, v in r.items() if k != "kept"} for r in rows] == [
        {k: v for k, v in r.items() if k != "kept"} for r in paper
    ]  # the filter changes nothing but the verdict
    for r in rows:
        want = r["kept_paper"] == "1" and float(r["control_rate"]) == 0.0
        assert r["kept"] == r["kept_specificity"] == str(int(want))
    assert (
        summary["filter"] == "specificity"
        and summary["n_kept"] == summary["filters"]["specificity"]["n_kept"]
    )
    table = read_rows(root / "strict" / "neuron_concepts.csv")
    kept_by_neuron = {int(r["neuron"]) for r in rows if r["kept"] == "1"}
    assert {int(t["neuron"]) for t in table if t["status"] == "verified"} == kept_by_neuron
    assert summary["n_verified"] == summary["filters"]["specificity"]["n_verified"] == len(kept_by_neuron)


def test_no_verify_keeps_everything_under_both_filters(generated) -> None:
    root, concepts, spec, _, _ = generated
    rows, summary = _run(
        root, concepts, spec, "noverify", filter="specificity", max_control_rate=0.0, enabled=False
    )
    assert all(r["kept"] == r["kept_paper"] == r["kept_specificity"] == "1" for r in rows)
    assert summary["filters"]["specificity"]["n_kept"] == summary["n_hypotheses"]


def test_adding_hypotheses_or_a_concept_set_never_changes_a_score(generated, tmp_path: Path) -> None:
    """The pool is the concept set's, the exclusion the hypothesis' own: a folder with one more neuron gives
    the same rows for the hypotheses both have, and so does a run whose requests never held the second concept
    set (its hypotheses and its pool)."""
    root, concepts, spec, _, _ = generated
    base, _ = _run(root, concepts, spec, "base")
    more = root / "more" / "hypotheses"
    more.mkdir(parents=True)
    for p in (root / "cs" / "hypotheses").glob("*.json"):
        (more / p.name).write_bytes(p.read_bytes())
    write_hyp_ids(more, 1, ["boat"])
    rows, _ = _run(root, concepts, spec, "more_out", hyp=more)
    assert len(rows) == len(base) + 1
    assert [r for r in rows if r["neuron"] != "1"] == base

    alone = tmp_path / "alone"
    hyp = alone / "cs" / "hypotheses"
    hyp.mkdir(parents=True)
    for p in (root / "cs" / "hypotheses").glob("*.json"):
        (hyp / p.name).write_bytes(p.read_bytes())
    req = run_requests(
        [str(hyp)], str(alone / "requests.json"), spec["prompt"], spec["shards"], spec,
        concepts_jsons=[concepts], controls=4, control_seed=0, neutral_prompts=list(NEUTRAL),
    )  # fmt: skip
    assert not any("lamp" in c["prompt"] for c in req["concepts"])  # the second set is not in these requests
    generate_all(req, spec, alone)
    (alone / "select.json").write_bytes((root / "select.json").read_bytes())
    rows, _ = _run(alone, concepts, spec, "out", hyp=hyp)
    assert rows == base


def test_a_control_prompt_missing_from_the_manifests_names_it(generated, tmp_path: Path) -> None:
    root, _, spec, _, _ = generated
    bigger = write_concepts(tmp_path / "cs" / "concepts.json", WORDS + ["ufo", "kite", "moon", "star", "sun"])
    with pytest.raises(
        VerifyError, match=r"control prompt '.*' is in no generation manifest; run snakemake again"
    ):
        run_activation_rate(
            str(root / "cs" / "hypotheses"),
            str(root / "select.json"),
            [str(root / "shards" / f"{s}.json") for s in range(spec["shards"])],
            "tiny",
            str(tmp_path / "ar.csv"),
            str(tmp_path / "summary.json"),
            str(tmp_path / "nc.csv"),
            controls=Controls(bigger, template=spec["prompt"], controls=9, seed=0, neutral_prompts=NEUTRAL),
        )
