"""A synthetic world's planted truth beside the workflow's result, for SIEVE and every baseline.

A planted concept is *recovered* when it is among the neuron's verified concepts (``neuron_concepts.csv``).
A hypothesis is *right* for a neuron when drawing it always shows one of the neuron's planted concepts (every
part the planted concept names, the hypothesis names too: "red circle" is right for the attribute neuron "red",
"red" is wrong for the detector "red circle"), and *wrong* otherwise.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import read_csv, read_json, write_csv, write_json
from ..synthetic.world import KINDS, World, load_world
from . import EvaluateError

log = logging.getLogger(__name__)

# Names the report reads (sieve.report imports them): truth.csv's planted column, truth_summary.json's
# per-kind table, its methods table and each method's recovery.
PLANTED_COLUMN = "planted_concepts"
KINDS_KEY = "kinds"
METHODS_KEY = "methods"
RECOVERY_KEY = "recovery"
TRUTH_COLUMNS = [
    "neuron",
    "kind",
    PLANTED_COLUMN,
    "selected",
    "status",
    "verified_concepts",
    "recovered",
    "n_recovered",
    "n_hypotheses",
    "n_wrong_hypotheses",
    "best_concept",
    "best_ar",
]
PLANTED_KINDS = ("detector", "polysemantic", "attribute")


def _require(row: dict[str, str], keys: Sequence[str], path: str) -> None:
    missing = [k for k in keys if k not in row]
    if missing:
        raise EvaluateError(f"{path}: missing columns {missing} (is it a sieve file of this version?)")


def is_right(world: World, hypothesis: str, planted: Sequence[str]) -> bool:
    """Does drawing ``hypothesis`` always show one of the ``planted`` concepts?"""
    h = world.parse(hypothesis)
    for p in planted:
        want = world.parse(p)
        if any(want[k] is not None for k in want) and all(want[k] is None or want[k] == h[k] for k in want):
            return True
    return False


def truth_table(
    world: World,
    select_summary: dict[str, Any],
    neuron_rows: list[dict[str, str]],
    ar_rows: list[dict[str, str]],
    where: str = "",
) -> list[dict[str, Any]]:
    """One row per neuron: planted kind and concepts, selected, verified concepts, recovered."""
    n_layer = int(select_summary.get("n_neurons", len(select_summary["neurons"])))
    if n_layer != len(world.neurons):
        raise EvaluateError(
            f"{where}: the analysed layer has {n_layer} neurons but the world spec {world.source} plants "
            f"{len(world.neurons)}: is this the synthetic model of that spec?"
        )
    by_neuron = {}
    for r in neuron_rows:
        _require(r, ("neuron", "status", "concepts"), f"{where} neuron_concepts.csv")
        by_neuron[int(r["neuron"])] = r
    hyps: dict[int, list[dict[str, str]]] = {}
    for r in ar_rows:
        _require(r, ("neuron", "concept", "ar", "kept"), f"{where} ar.csv")
        hyps.setdefault(int(r["neuron"]), []).append(r)
    rows = []
    for n in world.neurons:
        info = select_summary["neurons"][str(n.index)]
        nc = by_neuron.get(n.index, {})
        verified = json.loads(nc["concepts"]) if nc.get("concepts") else []
        recovered = [c for c in n.concepts if c in verified]
        mine = hyps.get(n.index, [])
        wrong = [h for h in mine if not is_right(world, h["concept"], n.concepts)]
        rows.append(
            {
                "neuron": n.index,
                "kind": n.kind,
                PLANTED_COLUMN: json.dumps(list(n.concepts)),
                "selected": bool(info.get("selected")),
                "status": nc.get("status", "not_selected"),
                "verified_concepts": json.dumps(verified),
                "recovered": bool(n.concepts) and len(recovered) == len(n.concepts),
                "n_recovered": len(recovered),
                "n_hypotheses": len(mine),
                "n_wrong_hypotheses": len(wrong),
                "best_concept": nc.get("best_concept", ""),
                "best_ar": nc.get("best_ar", ""),
            }
        )
    return rows


# ar.csv's columns of the two Verify filters (sieve.verify.activation_rate.FILTERS): truth_summary.json counts the
# right and wrong hypotheses each keeps (hypotheses.n_wrong_kept_paper, n_wrong_kept_specificity, n_right_...).
FILTER_COLUMNS = ("kept_paper", "kept_specificity")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def truth_summary(
    world: World, rows: list[dict[str, Any]], ar_rows: list[dict[str, str]], verify_summary: dict[str, Any]
) -> dict[str, Any]:
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        planted = kind in PLANTED_KINDS
        kinds[kind] = {
            "count": len(mine),
            "selected": sum(r["selected"] for r in mine),
            "selected_share": sum(r["selected"] for r in mine) / len(mine),
            "recovered": sum(r["recovered"] for r in mine) if planted else None,
            "recovered_share": sum(r["recovered"] for r in mine) / len(mine) if planted else None,
        }
    planted_rows = [r for r in rows if r["kind"] in PLANTED_KINDS]
    n_concepts = sum(len(json.loads(r[PLANTED_COLUMN])) for r in planted_rows)
    n_rec = sum(r["n_recovered"] for r in planted_rows)
    plan = {r["neuron"]: json.loads(r[PLANTED_COLUMN]) for r in rows}
    right_ar, wrong_ar, wrong_kept = [], [], 0
    # per filter (ar.csv's kept_paper / kept_specificity, when Verify scored the control pool): right and wrong
    # hypotheses each filter keeps, whichever is active
    by_filter = {
        f: {"right": 0, "wrong": 0} for f in FILTER_COLUMNS if ar_rows and ar_rows[0].get(f, "") != ""
    }
    for h in ar_rows:
        ar = float(h["ar"]) if h["ar"] not in ("", "nan") else math.nan
        right = is_right(world, h["concept"], plan.get(int(h["neuron"]), []))
        if right:
            right_ar.append(ar)
        else:
            wrong_ar.append(ar)
            wrong_kept += int(h["kept"] or 0)
        for f, counts in by_filter.items():
            counts["right" if right else "wrong"] += int(h[f] or 0)
    should_select = [r for r in rows if r["kind"] in PLANTED_KINDS]
    should_reject = [r for r in rows if r["kind"] not in PLANTED_KINDS]
    return {
        "spec": world.source,
        "n_neurons": len(rows),
        KINDS_KEY: kinds,
        "n_planted_concepts": n_concepts,
        "n_recovered_concepts": n_rec,
        RECOVERY_KEY: n_rec / n_concepts if n_concepts else None,
        "neurons_recovered_share": (
            sum(r["recovered"] for r in planted_rows) / len(planted_rows) if planted_rows else None
        ),
        "select_correct": all(r["selected"] for r in should_select)
        and not any(r["selected"] for r in should_reject),
        "hypotheses": {
            "n": len(ar_rows),
            "n_right": len(right_ar),
            "mean_ar_right": _mean(right_ar),
            "n_wrong": len(wrong_ar),
            "mean_ar_wrong": _mean(wrong_ar),
            "n_wrong_kept": wrong_kept,
            **{f"n_wrong_{f}": c["wrong"] for f, c in by_filter.items()},
            **{f"n_right_{f}": c["right"] for f, c in by_filter.items()},
        },
        "mean_ar_initial": verify_summary.get("mean_ar_initial"),
        "mean_ar_kept": verify_summary.get("mean_ar_kept"),
        "verify_enabled": verify_summary.get("verify_enabled", True),
        **({"filter": verify_summary["filter"]} if "filter" in verify_summary else {}),
    }


def compare_with_truth(
    spec: str | None, select_path: str, neuron_concepts_path: str, ar_path: str, verify_summary_path: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    world = load_world(spec)
    rows = truth_table(
        world,
        read_json(select_path),
        read_csv(neuron_concepts_path),
        read_csv(ar_path),
        where=neuron_concepts_path.rsplit("/", 1)[0],
    )
    return rows, truth_summary(world, rows, read_csv(ar_path), read_json(verify_summary_path))


def run_truth(
    spec: str | None,
    select_path: str,
    neuron_concepts_path: str,
    ar_path: str,
    verify_summary_path: str,
    out_csv: str,
    out_summary: str,
) -> dict[str, Any]:
    """Write ``truth.csv`` and ``truth_summary.json`` for one synthetic model / probe / concept set."""
    rows, summary = compare_with_truth(spec, select_path, neuron_concepts_path, ar_path, verify_summary_path)
    write_csv(out_csv, TRUTH_COLUMNS, rows)
    write_json(out_summary, summary)
    log.info(
        "truth: %d of %d planted concepts recovered (%.0f%%); Select correct: %s; wrong hypotheses: %d, "
        "mean AR %.3f, %d kept",
        summary["n_recovered_concepts"],
        summary["n_planted_concepts"],
        100 * (summary[RECOVERY_KEY] or 0),
        summary["select_correct"],
        summary["hypotheses"]["n_wrong"],
        summary["hypotheses"]["mean_ar_wrong"],
        summary["hypotheses"]["n_wrong_kept"],
    )
    return summary


# ----------------------------------------------------------------------------------------------------------
# every method side by side


TRUTH_METHOD_KEYS = (
    RECOVERY_KEY,
    "n_recovered_concepts",
    "n_planted_concepts",
    "neurons_recovered_share",
    "mean_ar_initial",
    "mean_ar_kept",
)


def method_truth(
    spec: str | None, select_path: str, neuron_concepts_path: str, ar_path: str, verify_summary_path: str
) -> dict[str, Any]:
    """One method's Verify result against a synthetic world's planted truth (the truth stage's own code)."""
    _, s = compare_with_truth(spec, select_path, neuron_concepts_path, ar_path, verify_summary_path)
    vs = read_json(verify_summary_path)
    return {
        **{k: s.get(k) for k in TRUTH_METHOD_KEYS},
        "n_hypotheses": vs.get("n_hypotheses"),
        "n_verified": vs.get("n_verified"),
        "hypotheses": s.get("hypotheses"),
    }


def add_methods_to_truth(
    summary_path: str,
    spec: str | None,
    select_path: str,
    baselines: dict[str, Sequence[str]],
    sieve_verify_summary: str | None = None,
) -> dict[str, Any]:
    """Add each baseline's recovery and mean AR to ``truth_summary.json`` (key = method name, what the report's
    comparison table reads) and a ``methods`` table with SIEVE beside them. ``baselines``: method -> its
    ``verify/ar.csv``, ``verify/summary.json`` and ``neuron_concepts.csv`` (any order)."""
    summary = read_json(summary_path)
    vs = read_json(sieve_verify_summary) if sieve_verify_summary else {}
    methods = {
        "sieve": {
            **{k: summary.get(k) for k in TRUTH_METHOD_KEYS},
            "n_hypotheses": vs.get("n_hypotheses"),
            "n_verified": vs.get("n_verified"),
        }
    }
    for name, files in baselines.items():
        by_name = {Path(f).name: f for f in files}
        missing = [f for f in ("ar.csv", "summary.json", "neuron_concepts.csv") if f not in by_name]
        if missing:
            raise EvaluateError(f"truth of baseline {name}: missing {missing} among {list(files)}")
        res = method_truth(
            spec, select_path, by_name["neuron_concepts.csv"], by_name["ar.csv"], by_name["summary.json"]
        )
        summary[name] = res
        methods[name] = {k: v for k, v in res.items() if k != "hypotheses"}
    summary[METHODS_KEY] = methods
    write_json(summary_path, summary)
    for name, m in methods.items():
        log.info(
            "truth %s: recovery %s, mean AR initial %s, kept %s",
            name,
            m.get(RECOVERY_KEY),
            m.get("mean_ar_initial"),
            m.get("mean_ar_kept"),
        )
    return summary
