"""The front page and the reference in docs/ keep pointing at things that exist: every relative link (and its
#anchor) resolves, every cited test file and test function exists, and the README stays a front page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from helpers import REPO

DOCS = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _anchors(md: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces as dashes)."""
    return {
        re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        for m in re.finditer(r"^#+ (.*)$", md.read_text(encoding="utf-8"), re.M)
    }


def _problems(md: Path, root: Path = REPO) -> list[str]:
    text = md.read_text(encoding="utf-8")
    where = md.relative_to(root)
    problems = []
    for m in re.finditer(r"\]\(([^)\s]+)\)", text):
        link = m.group(1)
        if re.match(r"[a-z]+:", link):  # http(s):, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (md.parent / path).resolve() if path else md.resolve()
        if not target.exists():
            problems.append(f"{where}: link to a missing file: {link}")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            problems.append(f"{where}: link to a missing heading: {link}")
    for m in re.finditer(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
        test_file, func = root / m.group(1), m.group(2)
        if not test_file.is_file():
            problems.append(f"{where}: cites a missing test file: {m.group(1)}")
        elif func and not re.search(rf"def {func}\b", test_file.read_text(encoding="utf-8")):
            problems.append(f"{where}: cites a missing test: {m.group(0)}")
    return problems


@pytest.mark.parametrize("md", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_links_and_cited_tests_exist(md: Path) -> None:
    assert _problems(md) == []


def test_readme_is_a_front_page() -> None:
    """The reference lives in docs/; the README says what sieve is and links there (issue 11: ~150 lines)."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 180
    assert any("docs/" in line for line in lines)


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    """The checker itself finds a missing file, a missing heading and a missing test, and passes good ones."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("def test_there():\n    pass\n")
    (tmp_path / "docs" / "outputs.md").write_text("# Files\n")
    md = tmp_path / "docs" / "page.md"
    md.write_text(
        "[a](nowhere.md) [b](outputs.md#no-such-heading) `tests/test_x.py::test_nothing_here`\n"
        "[ok](outputs.md#files) `tests/test_x.py::test_there` [web](https://example.org)\n"
    )
    found = _problems(md, root=tmp_path)
    assert len(found) == 3, found


def test_readme_quotes_the_recorded_test_times() -> None:
    """The README's test-suite times are bench/results/test_tiers.json's (made by bench/time_tests.py): each
    "the NAME tier ... ran N tests in S s on C cores ... (load average L" matches the file's NAME entry."""
    tiers = json.loads((REPO / "bench" / "results" / "test_tiers.json").read_text(encoding="utf-8"))
    text = re.sub(r"\s+", " ", (REPO / "README.md").read_text(encoding="utf-8"))
    quoted = re.findall(
        r"the (\w+) tier[^.]*? ran (\d+) tests in (\d+) s on (\d+) cores[^(]*\(load average ([\d.]+)", text
    )
    assert "fast" in {name for name, *_ in quoted}, "README.md: the fast tier's time is not quoted"
    for name, n, seconds, cores, load in quoted:
        entry = tiers[name]
        assert int(n) == entry["counts"]["passed"], f"README.md, {name} tier: {n} tests"
        assert int(seconds) == round(entry["wall_seconds"]), f"README.md, {name} tier: {seconds} s"
        assert int(cores) == entry["cores"], f"README.md, {name} tier: {cores} cores"
        assert float(load) == entry["load_average_at_start"], f"README.md, {name} tier: load average {load}"
