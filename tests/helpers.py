"""Test helpers: tiny image folders, configs, and real `snakemake` runs in a temp folder.

Tests import these from here (``from helpers import run_snakemake``), not from conftest. Every test that runs
Snakemake carries the ``workflow`` marker, so that ``pytest -m "not workflow"`` is the fast tier: running it
through :func:`run_snakemake` or :func:`snakemake_cmd` from a test without the marker fails at once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def make_image_folder(
    root: Path,
    n_per_class: int = 8,
    classes: tuple[str, ...] = ("cats", "dogs"),
    size: int = 48,
    corrupt: int = 1,
    seed: int = 0,
) -> Path:
    """Random RGB PNGs in class folders, plus ``corrupt`` files that are not images at all."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i:03d}.png")
    for i in range(corrupt):
        (root / classes[0] / f"broken{i}.jpg").write_bytes(b"this is not a jpeg" * 10)
    return root


# The planted world at its smallest (120 probe scenes, 2 images per concept, SIEVE only, no stage ablations): a
# whole run in well under a minute, for tests of the workflow's mechanics rather than its results.
SMALL_SYNTHETIC = {
    "models": {"synthetic": {"source": "synthetic"}},
    "probes": {"synthetic": {"kind": "synthetic", "n_images": 120}},
    "concept_sets": {"synthetic": {"synthetic": "default"}},
    "embedder": {"source": "synthetic"},
    "hypothesize": {"methods": ["sieve"]},
    "generator": {"source": "synthetic", "images_per_concept": 2, "shards": 1},
    "device": "cpu",
    "num_workers": 0,
}

# Set by conftest's autouse fixture: whether the running test carries the ``workflow`` marker.
_RUNNING = {"workflow_marked": True}


def set_workflow_marked(marked: bool) -> None:
    _RUNNING["workflow_marked"] = marked


def snakemake_cmd(*args: str) -> list[str]:
    """``python -m snakemake ARGS`` for a subprocess, refused in a test without the ``workflow`` marker."""
    if not _RUNNING["workflow_marked"]:
        raise RuntimeError(
            "this test runs Snakemake: mark it @pytest.mark.workflow (the fast tier, "
            "`pytest -m 'not workflow'`, must run none)"
        )
    return [sys.executable, "-m", "snakemake", *args]


def snakemake_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "workflow"), str(TESTS), env.get("PYTHONPATH", "")])
    env.setdefault("OMP_NUM_THREADS", "2")
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("SIEVE_OFFLINE", None)
    return env


def run_snakemake(
    workdir: Path,
    config: dict | None = None,
    targets: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
    check: bool = True,
    cores: int = 2,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """Run the real workflow (this repo's Snakefile) in ``workdir``; ``config`` is written as config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = snakemake_cmd(
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        str(cores),
        "--nolock",
        *extra,
        *targets,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-12000:]}"
        )
    return proc


def jobs_run(proc: subprocess.CompletedProcess) -> Counter:
    """Rule name -> number of jobs that ran, read from snakemake's output."""
    text = proc.stdout + proc.stderr
    return Counter(m.group(1) for m in re.finditer(r"^\s*(?:local)?rule (\w+):\s*$", text, re.M))


def tiny_config(image_dir: Path, concepts: Path | None = None, **overrides) -> dict:
    """A config over the tiny hot-spot CNN (tests/tinymodels.py) and an image folder."""
    cfg = {
        "models": {"tiny": {"source": "python", "factory": "tinymodels:hotspot_cnn", "batch_size": 8}},
        "probes": {"pics": {"kind": "imagefolder", "path": str(image_dir)}},
        "select": {"tau": 1.5, "top_n": 5},
        "device": "cpu",
        "num_workers": 0,
        "max_bad_image_share": 0.2,
        "concept_sets": {"words": {"path": str(concepts) if concepts else str(image_dir / "words.txt")}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


# ------------------------------------------------------------------------------------- the shared default run
# A whole default run (the repository's config.yaml) takes a minute or more on 2 cores; the tests that need one
# share ONE (conftest's session fixture ``default_run``). Tests that only read its results read it in place;
# a test that changes a run works on ``default_run_copy`` (a copy made by :func:`copy_run`).
DEFAULT_RUN_TIMEOUT_S = 1800  # the run's own limit; tests that may be the first to use it allow more


@dataclass(frozen=True)
class FinishedRun:
    """A finished run folder (config.yaml, results/, .snakemake/) and what Snakemake printed while making it."""

    path: Path
    output: str

    def config(self) -> dict:
        """The run's config, a fresh copy on every call (a test may change it without changing the run)."""
        return yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8"))


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of the run folder ``src`` at ``dest`` that is as up to date as ``src``: every file (results,
    logs, benchmarks, config.yaml, and Snakemake's own records in .snakemake/) with its modification time
    (``shutil.copy2``), since Snakemake decides what to rerun from mtimes and its metadata. Real copies, not
    hard links: a test that damages a file in place must not damage the original."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def run_state(run: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (mtime in ns, size) of every file of a run that a rerun or a damaging test changes:
    config.yaml, results/ and Snakemake's metadata (what it decides reruns from)."""
    files = [
        run / "config.yaml",
        *(run / "results").rglob("*"),
        *(run / ".snakemake" / "metadata").rglob("*"),
    ]
    return {
        str(p.relative_to(run)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(files)
        if p.is_file() and not p.is_symlink()
    }
