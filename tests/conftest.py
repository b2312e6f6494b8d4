"""Fixtures shared by the tests; the helpers themselves live in tests/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

import helpers
from helpers import make_image_folder


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tell helpers whether this test may run Snakemake (only tests marked ``workflow`` may). A hook rather than
    a fixture: it runs before the test's fixtures, module-scoped ones that run Snakemake included."""
    helpers.set_workflow_marked(item.get_closest_marker("workflow") is not None)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "images")
