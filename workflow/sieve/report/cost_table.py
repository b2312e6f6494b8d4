"""The report's "Predicted cost beside measured" table: per GPU stage, :func:`sieve.cost.predict`'s count (an
upper bound from the config), the count the run processed, GPU-seconds from the measured rates of each GPU class
(``bench/results``), and the stage's measured wall time (its ``benchmark:`` files).

The report job builds no model and imports no torch for it: the neurons and the probe sets' images come from the
run's own activations files (their HDF5 attributes), the concepts from the prepared concept sets
(:func:`~.tables.count_concepts`). A count that cannot be had makes the stages that need it "unknown"; the table
never fails the report (:func:`cost_table_or_none`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import cost
from ..paths import ACTIVATIONS_FILE, CROPS_FILE, GENERATE
from .values import ReportError, load_json

log = logging.getLogger(__name__)

TITLE = "Predicted cost beside measured"
UNKNOWN = "unknown"
NO_RATE = "no measured rate"
# The counts each stage's prediction needs (sieve.cost.predict): a missing one makes the stage unknown.
NEEDS = {"probe": ("probe images",), "embed_crops": ("neurons",), "generate": ("neurons", "concepts")}


def h5_attrs_and_shape(path: Path, dataset: str) -> tuple[dict[str, Any], tuple[int, ...]] | None:
    """A result HDF5's attributes and one dataset's shape (no data read), or None when the file is absent."""
    if not path.is_file():
        return None
    import h5py

    with h5py.File(path, "r") as f:
        return dict(f.attrs), tuple(f[dataset].shape)


def run_counts(
    results: Path, models: Sequence[str], probes: Sequence[str]
) -> tuple[dict[str, int], dict[str, int], dict[str, int | str]]:
    """From the activations, crops and generation files: each probe set's images and each model's neurons (for
    the prediction), and per stage the items the run processed (a reason string where a file is missing)."""
    probe_images: dict[str, int] = {}
    neurons: dict[str, int] = {}
    probed: int | str = 0
    crops: int | str = 0
    for m in models:
        for p in probes:
            acts = h5_attrs_and_shape(results / m / p / ACTIVATIONS_FILE, "activations")
            if acts is None:
                probed = f"{UNKNOWN}: no {m}/{p}/{ACTIVATIONS_FILE}"
            else:
                attrs, (n_rows, n_neurons) = acts
                probe_images.setdefault(
                    p, int(attrs.get("n_images_total", n_rows + int(attrs.get("n_skipped", 0))))
                )
                neurons.setdefault(m, int(attrs.get("n_neurons", n_neurons)))
                if isinstance(probed, int):
                    probed += n_rows
            embedded = h5_attrs_and_shape(results / m / p / CROPS_FILE, "embeddings")
            if embedded is None:
                crops = f"{UNKNOWN}: no {m}/{p}/{CROPS_FILE}"
            elif isinstance(crops, int):
                crops += embedded[1][0] * embedded[1][1]
    return probe_images, neurons, {"probe": probed, "embed_crops": crops, "generate": generated(results)}


def generated(results: Path) -> int | str:
    """Images the run's generation shards generated (``n_generated`` of each shard the plan sent to a job)."""
    plan_path = results / GENERATE / "plan" / "plan.json"
    if not plan_path.is_file():
        return f"{UNKNOWN}: no {GENERATE}/plan/plan.json"
    total = 0
    for shard in load_json(plan_path).get("work", []):
        path = results / GENERATE / "shards" / f"{shard}.json"
        n = load_json(path).get("n_generated") if path.is_file() else None
        if not isinstance(n, int):
            return f"{UNKNOWN}: no n_generated in {GENERATE}/shards/{shard}.json"
        total += n
    return total


def cost_table(
    settings: dict[str, Any],
    results: Path,
    benchmarks: Path,
    models: Sequence[str],
    probes: Sequence[str],
    concept_sets: Sequence[str],
    concept_counts: dict[str, int],
    rates_dir: Path = cost.BENCH_RESULTS,
) -> dict[str, Any]:
    """The table (title, columns, rows, note) for the run's models, probes and concept sets."""
    probe_images, neurons, processed = run_counts(results, models, probes)
    config = {
        key: copy.deepcopy(settings.get(key)) for key in ("select", "hypothesize", "generator", "verify")
    }
    config["models"] = {m: (settings.get("models") or {}).get(m) or {} for m in models}
    config["probes"] = {p: (settings.get("probes") or {}).get(p) or {} for p in probes}
    config["concept_sets"] = {c: (settings.get("concept_sets") or {}).get(c) or {} for c in concept_sets}
    missing = {
        "probe images": [p for p in probes if p not in probe_images],
        "neurons": [m for m in models if m not in neurons],
        "concepts": [c for c in concept_sets if c not in concept_counts],
    }
    # a missing count is given as 0 so that nothing is built or read; the stages that need it show "unknown"
    pred = cost.predict(
        config,
        probe_given={p: probe_images.get(p, 0) for p in probes},
        neurons_given={m: neurons.get(m, 0) for m in models},
        concepts_given={c: concept_counts.get(c, 0) for c in concept_sets},
    )
    pred = cost.with_measured(pred, benchmarks)
    classes = cost.measured_rates(rates_dir)
    gpu_columns = [f"GPU-s on {gpu}" for gpu in classes] or ["GPU-s"]
    per_class = [cost.with_rates(copy.deepcopy(pred), c["rates"], 1)["stages"] for c in classes.values()]
    rows = []
    for i, st in enumerate(pred["stages"]):
        lacking = [f"{what} of {', '.join(missing[what])}" for what in NEEDS[st["stage"]] if missing[what]]
        unknown = f"{UNKNOWN}: no count of {'; '.join(lacking)}" if lacking else None
        if unknown:
            gpu_cells: list[Any] = [UNKNOWN] * len(gpu_columns)
        elif not per_class:
            gpu_cells = [NO_RATE]
        else:
            gpu_cells = [NO_RATE if s[i]["gpu_seconds"] is None else s[i]["gpu_seconds"] for s in per_class]
        measured = st.get("measured_seconds")
        rows.append(
            [
                st["stage"],
                st["items"],
                unknown or st["count"],
                processed[st["stage"]],
                *gpu_cells,
                cost.MEASURED_STAGES[st["stage"]],
                "no benchmark file" if measured is None else measured,
            ]
        )
    return {
        "title": TITLE,
        "columns": [
            "stage",
            "items",
            "predicted (at most)",
            "processed",
            *gpu_columns,
            "benchmark",
            "measured s",
        ],
        "rows": rows,
        "note": "predicted by python -m sieve.cost from this run's config (counts after Select are upper bounds); "
        "GPU-seconds from the GPU suite's measured rates (bench/results), on one GPU; measured s: the sum of the "
        "stage's benchmark files",
    }


def cost_table_or_none(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """:func:`cost_table`, or None (logged) when the run's files cannot give one: the table never fails the report."""
    try:
        return cost_table(*args, **kwargs)
    except (
        cost.CostError,
        ReportError,
        OSError,
        KeyError,
        IndexError,
        AttributeError,
        TypeError,
        ValueError,
    ) as exc:
        log.warning("report: no %r table (%s: %s)", TITLE, type(exc).__name__, exc)
        return None
