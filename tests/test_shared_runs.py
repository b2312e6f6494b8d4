"""The shared default run's helpers (tests/helpers.py): a copy of a run is as up to date as the run (same files,
same modification times, Snakemake's metadata included) and independent of it, and ``run_state`` notices a
test that wrote into a run. The workflow tests that use them (tests/test_cache_healing.py,
tests/test_moved_run.py, tests/test_demo.py) check on a real run that a copy plans no job."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import copy_run, run_state


def _fake_run(root: Path) -> Path:
    """A run folder's shape: config, results (a nested file and a link), Snakemake's metadata and its log."""
    for rel, text in {
        "config.yaml": "models: {}\n",
        "results/a/b.csv": "x\n1\n",
        "results/c.json": "{}",
        ".snakemake/metadata/cmVzdWx0cy9jLmpzb24=": '{"rule": "c"}',
        ".snakemake/log/run.log": "log\n",
    }.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    old = 1_600_000_000_000_000_000
    for i, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        os.utime(path, ns=(old + i, old + i))  # distinct times far in the past: a copy must keep each
    (root / "results/link.csv").symlink_to("a/b.csv")
    return root


def test_a_copied_run_keeps_every_file_and_modification_time(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    copy = copy_run(run, tmp_path / "copy")
    state = run_state(run)
    assert set(state) == {
        "config.yaml",
        "results/a/b.csv",
        "results/c.json",
        ".snakemake/metadata/cmVzdWx0cy9jLmpzb24=",
    }
    assert run_state(copy) == state
    assert (copy / ".snakemake/log/run.log").is_file()
    assert os.readlink(copy / "results/link.csv") == "a/b.csv"  # a link stays a link (to the copy's file)


def test_damaging_a_copy_in_place_leaves_the_run_and_is_noticed(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run")
    before = run_state(run)
    copy = copy_run(run, tmp_path / "copy")
    with open(copy / "results/a/b.csv", "r+b") as fh:  # in place, as a truncating test does (no new inode)
        fh.truncate(1)
    assert (run / "results/a/b.csv").read_text(encoding="utf-8") == "x\n1\n"
    assert run_state(run) == before
    assert run_state(copy)["results/a/b.csv"] != before["results/a/b.csv"]
    (copy / "results/c.json").unlink()
    assert "results/c.json" not in run_state(copy)
