"""The final report: a static, offline HTML page (see :mod:`sieve.report.build`)."""

from .build import (
           ReportError,
           build_report,
           embed_json,
           json_table,
           make_thumbnail,
           read_benchmarks,
           render_html,
)

__all__ = ["ReportError", "build_report", "embed_json", "json_table", "make_thumbnail", "read_benchmarks",
           "render_html"]
