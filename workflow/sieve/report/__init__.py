"""The final report: a static, offline HTML page (see :mod:`sieve.report.build`)."""

from .assets import embed_json, make_thumbnail, render_html
from .build import build_report
from .tables import json_table, read_benchmarks
from .values import ReportError

__all__ = [
    "ReportError",
    "build_report",
    "embed_json",
    "json_table",
    "make_thumbnail",
    "read_benchmarks",
    "render_html",
]
