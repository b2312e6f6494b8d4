"""Honest comparisons for the benchmarks: both sides interleaved, repeated, reported as min and median.

Running side A to completion and then side B lets a warming file cache, a CPU frequency change or a neighbour's
load favour one side. :func:`interleaved` runs A, B, A, B, ... for ``rounds`` rounds (after an optional warm-up
round that is not counted) and :func:`summary` reports every round, the minimum (the least disturbed run) and the
median (the typical one). Speed-ups are given from both.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

MIN_ROUNDS = 3


def interleaved(
    sides: dict[str, Callable[[], dict[str, Any]]], rounds: int = MIN_ROUNDS, warmup: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Run each side once per round, in the same order every round; each call returns a dict with ``seconds``.
    Returns every counted result per side."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if warmup:
        for run in sides.values():
            run()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            res = run()
            if "seconds" not in res:
                raise ValueError(f"bench side {name!r} returned no 'seconds'")
            results[name].append(res)
    return results


def summary(runs: list[dict[str, Any]], work: float) -> dict[str, Any]:
    """Seconds and ``work``/s (images/s) of a side's rounds: each round, min and median."""
    secs = [float(r["seconds"]) for r in runs]
    return {
        "rounds": len(secs),
        "seconds": [round(s, 4) for s in secs],
        "seconds_min": round(min(secs), 4),
        "seconds_median": round(statistics.median(secs), 4),
        "per_s_max": round(work / min(secs), 3),
        "per_s_median": round(work / statistics.median(secs), 3),
    }


def speedup(base: dict[str, Any], new: dict[str, Any]) -> dict[str, float]:
    """How many times faster ``new`` is than ``base``, from the minima and from the medians."""
    return {
        "from_min": round(base["seconds_min"] / new["seconds_min"], 3),
        "from_median": round(base["seconds_median"] / new["seconds_median"], 3),
    }
