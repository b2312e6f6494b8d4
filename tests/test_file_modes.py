"""Result files get the mode the user's umask gives an ordinary file, not the temporary file's 0600
(issue 15, item 8): a report copied to a shared folder must open for colleagues."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import REPO, snakemake_env
from sieve.io import atomic_path, ordinary_file_mode, write_bytes_atomic, write_json, write_text
from sieve.verify.cache import write_cache_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_ordinary_file_mode_follows_umask(umask: int) -> None:
    assert ordinary_file_mode() == 0o666 & ~umask


def test_atomic_writers_give_umask_mode(tmp_path: Path, umask: int) -> None:
    want = 0o666 & ~umask
    write_json(tmp_path / "a.json", {"x": 1})
    write_text(tmp_path / "b.txt", "hello")
    with atomic_path(tmp_path / "c.h5", suffix=".h5.partial") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    write_cache_file(tmp_path / "cache" / "d.npz", b"npz")
    for name in ("a.json", "b.txt", "c.h5", "cache/d.npz", "cache/d.npz.sha256"):
        assert _mode(tmp_path / name) == want, name


def test_bytes_written_atomically_replace_the_file_or_leave_it_alone(tmp_path: Path) -> None:
    """The cache's writer (bytes already in memory): the parent is created, an old file is replaced whole, and a
    failed rename leaves neither a changed file nor a temporary one."""
    path = tmp_path / "new" / "dir" / "t.jpg"
    write_bytes_atomic(path, b"first")
    write_bytes_atomic(path, b"second")
    assert path.read_bytes() == b"second"
    blocked = tmp_path / "new" / "dir" / "d.jpg"
    (blocked / "inside").mkdir(parents=True)  # a non-empty directory: os.replace onto it fails
    with pytest.raises(OSError):
        write_bytes_atomic(blocked, b"x")
    assert sorted(p.name for p in path.parent.iterdir()) == ["d.jpg", "t.jpg"]


def test_overwrite_does_not_keep_an_old_private_mode(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "r.json"
    path.write_text("{}")
    path.chmod(0o600)
    write_json(path, {"y": 2})
    assert _mode(path) == 0o666 & ~umask


def test_a_real_process_under_umask_022(tmp_path: Path) -> None:
    """The mode comes from the umask the process was started with (as a shell's `umask 022` sets it)."""
    code = (
        "import sys; from sieve.io import write_text, write_json; "
        "write_text(sys.argv[1] + '/index.html', '<html>'); write_json(sys.argv[1] + '/s.json', {})"
    )
    subprocess.run(
        ["sh", "-c", f'umask 022 && exec "{sys.executable}" -c "{code}" "{tmp_path}"'],
        check=True,
        env=snakemake_env(),
        cwd=REPO,
    )
    assert _mode(tmp_path / "index.html") == 0o644
    assert _mode(tmp_path / "s.json") == 0o644
