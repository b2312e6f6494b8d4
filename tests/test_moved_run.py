"""A finished run stays finished when it moves (issue 15, item 9).

The packaged world spec was an input of the probe, the concept set and the truth by its absolute path in the
checkout, so moving or copying the clone (or reinstalling the package) changed their set of input files and
Snakemake reran everything; truth_summary.json and the embedders' names recorded that path. The packaged spec
is now named ``default`` in what the rules record, and its content (not its path) keys their reruns. The run is
the shared default run of tests/conftest.py (the quick start's config, every stage), read in place and copied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import h5py
import pytest

from helpers import (
    DEFAULT_RUN_TIMEOUT_S,
    REPO,
    FinishedRun,
    copy_run,
    jobs_run,
    snakemake_cmd,
    snakemake_env,
)

CHECKOUT_PARTS = ("Snakefile", "workflow", "envs", "pyproject.toml")


def copy_checkout(dest: Path) -> Path:
    """The workflow's files in a new folder, modification times kept (as `mv` or `cp -a` keep them)."""
    dest.mkdir(parents=True)
    for part in CHECKOUT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / part)
    return dest


def snakemake_in(checkout: Path, run: Path, *extra: str) -> subprocess.CompletedProcess:
    """The workflow of ``checkout`` (its Snakefile and its sieve package) on the run folder ``run``."""
    env = snakemake_env()
    env["PYTHONPATH"] = str(checkout / "workflow")
    cmd = snakemake_cmd(
        "-s",
        str(checkout / "Snakefile"),
        "-d",
        str(run),
        "--configfile",
        str(run / "config.yaml"),
        "--cores",
        "2",
        "--nolock",
        *extra,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.mark.workflow
@pytest.mark.timeout(DEFAULT_RUN_TIMEOUT_S + 600)  # the shared default run (if first), then three dry runs
def test_a_moved_run_and_checkout_are_up_to_date(default_run: FinishedRun, tmp_path: Path) -> None:
    """The shared default run, made by this checkout in its own folder, copied elsewhere and read by a copy of
    the checkout in another folder."""
    run = default_run.path

    # what the run records names the packaged world, not where the checkout or the run lay
    truth = json.loads((run / "results/synthetic/synthetic/synthetic/truth_summary.json").read_text("utf-8"))
    assert truth["spec"] == "default"
    for h5 in ("results/concepts/synthetic/embeddings.h5", "results/synthetic/synthetic/crops/crops.h5"):
        with h5py.File(run / h5, "r") as f:
            assert f.attrs["embedder_name"] == "synthetic(default)"
    places = (str(run).encode(), str(REPO).encode())
    recorded = [
        p
        for p in (run / "results").rglob("*")
        if p.is_file() and any(place in p.read_bytes() for place in places)
    ]
    assert recorded == []

    # the run folder copied elsewhere, and the checkout moved: nothing to do
    moved_checkout = copy_checkout(tmp_path / "b" / "sieve")
    moved_run = copy_run(run, tmp_path / "b" / "run")
    assert jobs_run(snakemake_in(moved_checkout, moved_run, "-n")) == Counter()
    assert jobs_run(snakemake_in(moved_checkout, run, "-n")) == Counter()  # a dry run: the shared run stays

    # the packaged world's content still keys the run: editing it reruns what reads it
    spec = moved_checkout / "workflow/sieve/synthetic/default.yaml"
    os.chmod(spec, 0o644)
    spec.write_text(spec.read_text("utf-8").replace("noise: 0.03", "noise: 0.05"), encoding="utf-8")
    rerun = jobs_run(snakemake_in(moved_checkout, moved_run, "-n"))
    assert rerun["probe_activations"] == 1 and rerun["prepare_concepts"] == 1 and rerun["truth"] == 1
