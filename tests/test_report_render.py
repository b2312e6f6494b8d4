"""The page template is filled in one pass: user text that looks like a placeholder stays text."""

from __future__ import annotations

from sieve.report.assets import render_html


def test_a_title_holding_a_placeholder_stays_text() -> None:
    page = render_html({"secret": "blob"}, "my {{DATA}} and {{TITLE}} run")
    assert page.count('"secret":"blob"') == 1  # the data blob once, in its script element only
    assert "my {{DATA}} and {{TITLE}} run" in page
