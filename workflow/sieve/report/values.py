"""Reading the result files the report shows: tolerant parsing of JSON and CSV cells, clusters and concepts.

Every reader raises :class:`ReportError` naming the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..io import read_csv, read_json
from ..verify.requests import CLUSTER_KEY, CONCEPT_ID_KEY, CONCEPT_TEXT_KEY


class ReportError(ValueError):
    """A result file the report reads is malformed: the message names the file and the problem."""


def load_json(path: Path) -> Any:
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc


def load_csv(path: Path) -> list[dict[str, str]]:
    return read_csv(path)


def load_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def as_number(value: Any, where: str) -> float | None:
    """A number from JSON/CSV: '', None and 'nan' give None; 'inf' gives inf; anything else must parse."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"{where}: {value!r} is not a number") from None
    return None if math.isnan(x) else x


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "t")
    return bool(value)


def rounded(x: float | None, digits: int = 4) -> float | str | None:
    if x is None:
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return round(x, digits)


def short_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def display_cell(value: str) -> str:
    """A CSV cell that holds a JSON list (truth.csv's concept lists) as plain comma-separated text."""
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(items, list):
            return ", ".join(map(str, items))
    return value


def as_items(obj: Any, id_key: str) -> list[dict[str, Any]]:
    """Clusters may be written as a list of objects or as a mapping id -> object / id -> concept list."""
    if obj is None:
        return []
    if isinstance(obj, dict):
        out = []
        for key, value in obj.items():
            item = dict(value) if isinstance(value, dict) else {"concepts": value}
            item.setdefault(id_key, key)
            out.append(item)
        return out
    if isinstance(obj, list):
        return [dict(v) if isinstance(v, dict) else {"concepts": v} for v in obj]
    raise ReportError(f"expected a list or a mapping of clusters, got {type(obj).__name__}")


def cluster_id(item: dict[str, Any], fallback: int) -> str:
    """A cluster's id as the hypotheses and clusters files write it, else its position."""
    value = item.get(CLUSTER_KEY)
    return str(fallback) if value is None else str(value)


def concept_id(c: dict[str, Any]) -> str:
    return str(c.get(CONCEPT_ID_KEY, ""))


def concept_text(c: dict[str, Any]) -> str:
    return str(c.get(CONCEPT_TEXT_KEY, ""))
