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


def test_a_damaged_activation_file_shows_no_values(tmp_path) -> None:
    """The report reads Verify's cache through its checksums: an altered file gives no values, not wrong ones,
    and an intact one gives the stored activations."""
    import io

    import numpy as np

    from sieve.io import write_json
    from sieve.report.results import generated_activations
    from sieve.verify.cache import write_cache_file

    def acts_file(name: str) -> str:
        path = tmp_path / "results" / "generate" / "cache" / f"{name}.npz"
        buf = io.BytesIO()
        np.savez(buf, seeds=np.arange(2), pooled=np.array([[0.5], [2.0]], dtype=np.float32))
        write_cache_file(path, buf.getvalue())
        return path.relative_to(tmp_path).as_posix()

    good, bad = acts_file("good"), acts_file("bad")
    (tmp_path / bad).write_bytes((tmp_path / bad).read_bytes()[:-8] + b"\0" * 8)  # altered, same size
    gen = tmp_path / "results" / "generate"
    write_json(gen / "plan" / "plan.json", {"shards": [{"shard": 0, "work": True}], "work": [0]})
    concepts = [{"texts": [t], "acts": {"m": f}} for t, f in (("good", good), ("bad", bad))]
    write_json(gen / "shards" / "0.json", {"models": {"m": {}}, "concepts": concepts})
    values = generated_activations(tmp_path / "results", tmp_path, "m")
    assert values("good", 0) == {0: 0.5, 1: 2.0}
    assert values("bad", 0) is None
