"""The page template is filled in one pass: user text that looks like a placeholder stays text."""

from __future__ import annotations

from sieve.report.assets import render_html


def test_a_title_holding_a_placeholder_stays_text() -> None:
    page = render_html({"secret": "blob"}, "my {{DATA}} and {{TITLE}} run")
    assert page.count('"secret":"blob"') == 1  # the data blob once, in its script element only
    assert "my {{DATA}} and {{TITLE}} run" in page


def test_the_report_reads_the_manifests_of_the_plan(tmp_path) -> None:
    """A shard the plan sent to no job has its manifest in the plan's folder: the report reads that one (the
    file Activation Rate reads), not a stale job manifest."""
    from sieve.io import write_json
    from sieve.report.results import generation_manifests

    gen = tmp_path / "results" / "generate"
    write_json(
        gen / "plan" / "plan.json",
        {"shards": [{"shard": 0, "work": True}, {"shard": 1, "work": False}], "work": [0]},
    )
    for path in (gen / "shards" / "0.json", gen / "shards" / "1.json", gen / "plan" / "shards" / "1.json"):
        write_json(path, {})
    got = [p.relative_to(tmp_path).as_posix() for p in generation_manifests(tmp_path / "results", tmp_path)]
    assert got == ["results/generate/shards/0.json", "results/generate/plan/shards/1.json"]
    assert generation_manifests(tmp_path / "nothing", tmp_path / "nothing") == []
