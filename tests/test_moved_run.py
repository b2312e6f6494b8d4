"""A finished run stays finished when it moves (issue 15, item 9).

The packaged world spec was an input of the probe, the concept set and the truth by its absolute path in the
checkout, so moving or copying the clone (or reinstalling the package) changed their set of input files and
Snakemake reran everything; truth_summary.json and the embedders' names recorded that path. The packaged spec
is now named ``default`` in what the rules record, and its content (not its path) keys their reruns.
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
import yaml

from helpers import REPO, SMALL_SYNTHETIC, jobs_run, snakemake_cmd, snakemake_env

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
def test_a_moved_run_and_checkout_are_up_to_date(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "a" / "sieve")
    run = tmp_path / "a" / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(SMALL_SYNTHETIC), encoding="utf-8")
    assert jobs_run(snakemake_in(checkout, run))["truth"] == 1

    # what the run records names the packaged world, not where the checkout lay
    truth = json.loads((run / "results/synthetic/synthetic/synthetic/truth_summary.json").read_text("utf-8"))
    assert truth["spec"] == "default"
    for h5 in ("results/concepts/synthetic/embeddings.h5", "results/synthetic/synthetic/crops/crops.h5"):
        with h5py.File(run / h5, "r") as f:
            assert f.attrs["embedder_name"] == "synthetic(default)"
    recorded = [
        p for p in (run / "results").rglob("*") if p.is_file() and str(tmp_path).encode() in p.read_bytes()
    ]
    assert recorded == []

    # the run folder copied elsewhere, and the checkout moved: nothing to do
    moved_checkout = tmp_path / "b" / "sieve"
    shutil.copytree(checkout, moved_checkout)
    shutil.rmtree(checkout)
    moved_run = tmp_path / "b" / "run"
    shutil.copytree(run, moved_run, symlinks=True)
    assert jobs_run(snakemake_in(moved_checkout, moved_run, "-n")) == Counter()
    assert jobs_run(snakemake_in(moved_checkout, run, "-n")) == Counter()

    # the packaged world's content still keys the run: editing it reruns what reads it
    spec = moved_checkout / "workflow/sieve/synthetic/default.yaml"
    os.chmod(spec, 0o644)
    spec.write_text(spec.read_text("utf-8").replace("noise: 0.03", "noise: 0.05"), encoding="utf-8")
    rerun = jobs_run(snakemake_in(moved_checkout, moved_run, "-n"))
    assert rerun["probe_activations"] == 1 and rerun["prepare_concepts"] == 1 and rerun["truth"] == 1
