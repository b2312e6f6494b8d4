"""Fixtures shared by the tests; the helpers themselves live in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import helpers
from helpers import (
    DEFAULT_RUN_TIMEOUT_S,
    REPO,
    FinishedRun,
    copy_run,
    make_image_folder,
    run_snakemake,
    run_state,
)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tell helpers whether this test may run Snakemake (only tests marked ``workflow`` may). A hook rather than
    a fixture: it runs before the test's fixtures, module-scoped ones that run Snakemake included."""
    helpers.set_workflow_marked(item.get_closest_marker("workflow") is not None)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinishedRun]:
    """ONE finished run of the repository's config.yaml, as the quick start runs it (the planted world, both
    methods, two generation shards, the stage ablations), shared by every test that reads its results. Read
    only: a test that changes a run takes ``default_run_copy``; the run's files are checked unchanged at the
    end of the session, so a test that wrote into it fails there."""
    work = tmp_path_factory.mktemp("default_run")
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    proc = run_snakemake(work, config, timeout=DEFAULT_RUN_TIMEOUT_S)
    before = run_state(work)
    yield FinishedRun(work, proc.stdout + proc.stderr)
    assert run_state(work) == before, "a test changed the shared default run (it must use default_run_copy)"


@pytest.fixture
def default_run_copy(default_run: FinishedRun, tmp_path: Path) -> Path:
    """A private copy of the finished default run, exactly as up to date as the original: damage it, rerun
    it, change its config."""
    return copy_run(default_run.path, tmp_path / "default_run")
