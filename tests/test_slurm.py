"""The tiny workflow through a real one-node SLURM cluster (tests/slurm_cluster.sh) with profiles/slurm.

Skipped only where SLURM is not installed (`sbatch` missing). tests/ci_slurm_setup.sh installs and starts the
cluster; if it is installed but not running, this module starts it (as root) and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import REPO, TESTS, copy_run, make_image_folder, run_snakemake, tiny_config

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(
        shutil.which("sbatch") is None, reason="SLURM is not installed (tests/ci_slurm_setup.sh)"
    ),
]

CLUSTER = TESTS / "slurm_cluster.sh"
SLURM_DIR = Path(os.environ.get("SIEVE_SLURM_DIR", "/tmp/sieve-slurm"))
PROFILES = (
    "--profile",
    str(REPO / "profiles" / "slurm"),
    "--profile",
    str(TESTS / "profiles" / "slurm-test"),
)
TARGETS = ("results/tiny/pics/select/summary.json", "results/tiny/pics/select/ratio_histogram.png")
# Time limits, nested so that the innermost one that trips names what was slow: each snakemake run has its own
# limit, and a test's pytest timeout (over pyproject's 600 s default) exceeds the sum of its runs' limits plus
# the cluster's start. A loaded machine (the whole workflow took 390 s alone, longer beside other jobs) slows
# the runs, so the limits are generous: they stop a hung run, not a slow one.
CLUSTER_START_S = 120
LOCAL_RUN_S = 900
SLURM_RUN_S = 1500


def _cluster_up() -> bool:
    proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() in {"idle", "mixed", "allocated"}


@pytest.fixture(scope="module")
def cluster():
    started = False
    if not _cluster_up():
        proc = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True)
        assert proc.returncode == 0, f"could not start the test cluster:\n{proc.stdout}\n{proc.stderr}"
        started = True
    assert _cluster_up()
    yield SLURM_DIR
    if started:
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, text=True)


def _scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def _assert_same_outputs(a: Path, b: Path) -> None:
    h5 = "results/tiny/pics/activations.h5"
    with h5py.File(a / h5) as fa, h5py.File(b / h5) as fb:
        names: list[str] = []
        fa.visit(lambda n: names.append(n) if isinstance(fa[n], h5py.Dataset) else None)
        assert names and "activations" in " ".join(names)
        for name in names:
            x, y = fa[name][()], fb[name][()]
            if np.issubdtype(np.asarray(x).dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name)
            else:
                assert np.array_equal(x, y), name
    sa = json.loads((a / "results/tiny/pics/select/summary.json").read_text())
    sb = json.loads((b / "results/tiny/pics/select/summary.json").read_text())
    assert {n for n, v in sa["neurons"].items() if v["selected"]} == {
        n for n, v in sb["neurons"].items() if v["selected"]
    }
    for n, v in sa["neurons"].items():
        other = sb["neurons"][n]["ratio"]
        assert v["ratio"] == (pytest.approx(other, rel=1e-5) if isinstance(other, float) else other), n
    na = sorted(p.name for p in (a / "results/tiny/pics/select/neurons").iterdir())
    assert na and na == sorted(p.name for p in (b / "results/tiny/pics/select/neurons").iterdir())
    assert (b / "results/tiny/pics/select/ratio_histogram.png").stat().st_size > 0


@pytest.mark.workflow
@pytest.mark.timeout(CLUSTER_START_S + LOCAL_RUN_S + SLURM_RUN_S + 60)
def test_tiny_workflow_runs_through_slurm_like_locally(cluster, tmp_path):
    images = make_image_folder(tmp_path / "images", n_per_class=8, size=32)
    (images / "words.txt").write_text("cat\ndog\n")
    config = tiny_config(images)

    local = run_snakemake(
        tmp_path / "local",
        config,
        TARGETS,
        extra=("--profile", str(REPO / "profiles" / "local")),
        timeout=LOCAL_RUN_S,
    )
    proc = run_snakemake(tmp_path / "slurm", config, TARGETS, extra=PROFILES, timeout=SLURM_RUN_S)
    text = proc.stdout + proc.stderr

    # Every job went through sbatch: the GPU rule alone, the tiny bookkeeping rules as one group job.
    submitted = dict(
        re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\w+?)/", text)
    )
    assert sorted(submitted.values()) == [
        "group_select_ratio_histogram_select_neurons",
        "rule_probe_activations",
    ], text[-4000:]
    jobcomp = (cluster / "jobcomp.txt").read_text()
    workdir = str(tmp_path / "slurm")
    for job_id in submitted:
        line = re.search(rf"^JobId={job_id} .*$", jobcomp, re.M)
        assert line, f"SLURM job {job_id} is not in the job completion log"
        assert "JobState=COMPLETED" in line.group(0) and f"WorkDir={workdir} " in line.group(0)
    # ... with profiles/slurm's resources: one (fake) GPU, cpus_per_gpu and memory for the GPU rule.
    probe_job = next(j for j, r in submitted.items() if r == "rule_probe_activations")
    info = _scontrol(probe_job)
    assert "TresPerJob=gres:gpu:1" in info and "CpusPerTres=gres:gpu:4" in info, info
    assert "mem=16000M" in info, info
    # The local run ran the same rules without SLURM.
    assert "SLURM" not in local.stdout + local.stderr
    _assert_same_outputs(tmp_path / "local", tmp_path / "slurm")


SYNTHETIC = {
    "models": {"synthetic": {"source": "synthetic"}},
    "probes": {"synthetic": {"kind": "synthetic", "n_images": 150, "seed": 0}},
    "concept_sets": {"synthetic": {"synthetic": "default"}},
    "embedder": {"source": "synthetic"},
    "generator": {"source": "synthetic", "images_per_concept": 4, "shards": 2},
    "device": "cpu",
    "num_workers": 0,
}


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> tuple[Path, str]:
    """The planted world, every stage, run through SLURM once: its folder and what Snakemake printed. Read by
    the comparison with a local run; the rerun test changes a copy of it."""
    work = tmp_path_factory.mktemp("slurm_synthetic") / "slurm"
    proc = run_snakemake(work, SYNTHETIC, extra=PROFILES, timeout=SLURM_RUN_S)
    return work, proc.stdout + proc.stderr


@pytest.mark.workflow
@pytest.mark.timeout(CLUSTER_START_S + LOCAL_RUN_S + SLURM_RUN_S + 60)
def test_whole_workflow_through_slurm_equals_local(cluster, slurm_run, tmp_path):
    """Every stage, probe to report, on the planted world: GPU rules as GPU jobs, bookkeeping grouped, and the
    same hypotheses, Activation Rates, verified concepts and planted-truth recovery as a local run."""
    local = run_snakemake(
        tmp_path / "local",
        SYNTHETIC,
        extra=("--profile", str(REPO / "profiles" / "local")),
        timeout=LOCAL_RUN_S,
    )
    slurm, text = slurm_run
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/(\w+?)/", text)
    kinds = sorted(name for _, name in submitted)
    gpu_rules = {"rule_probe_activations", "rule_embed_crops", "rule_embed_concepts", "rule_generate_shard"}
    assert gpu_rules <= set(kinds), kinds
    assert kinds.count("rule_generate_shard") == 2  # one GPU job per shard
    assert any(k.startswith("group_") for k in kinds)  # bookkeeping rules share SLURM jobs
    assert len(submitted) < len(re.findall(r"^\s*(?:local)?rule \w+:", local.stdout + local.stderr, re.M))
    jobcomp = (cluster / "jobcomp.txt").read_text()
    for job_id, _ in submitted:
        line = re.search(rf"^JobId={job_id} .*$", jobcomp, re.M)
        assert line and "JobState=COMPLETED" in line.group(0), job_id
    res = "results/synthetic/synthetic/synthetic"
    for rel in (f"{res}/verify/ar.csv", f"{res}/neuron_concepts.csv", f"{res}/truth.csv"):
        assert (slurm / rel).read_text() == (tmp_path / "local" / rel).read_text(), rel
    truth = json.loads((slurm / res / "truth_summary.json").read_text())
    assert truth["recovery"] >= 0.9
    assert (slurm / "results/report/index.html").stat().st_size > 1000


@pytest.mark.workflow
@pytest.mark.timeout(CLUSTER_START_S + 2 * SLURM_RUN_S + 60)
def test_rerun_with_cached_concepts_submits_no_generation_job_through_slurm(cluster, slurm_run, tmp_path):
    """Issue 12: a concept set whose concepts were all generated before queues no generate_shard job (the
    generation plan, a CPU job, finds them in the cache); its only GPU job embeds the new set's concepts. On a
    copy of the shared SLURM run (mtimes and Snakemake's records kept: the copy is as up to date as the run)."""
    copy_run(slurm_run[0], tmp_path / "slurm")
    more = {**SYNTHETIC, "concept_sets": {**SYNTHETIC["concept_sets"], "again": {"synthetic": "default"}}}
    proc = run_snakemake(tmp_path / "slurm", more, extra=PROFILES, timeout=SLURM_RUN_S)
    text = proc.stdout + proc.stderr
    kinds = [
        name
        for _, name in re.findall(
            r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/"
            r"(\w+?)/",
            text,
        )
    ]
    assert kinds and not [k for k in kinds if "generate_shard" in k], kinds
    gpu = [
        k
        for k in kinds
        if k.startswith("rule_")
        and k[5:] in {"probe_activations", "embed_crops", "embed_concepts", "embed_probe_images"}
    ]
    assert gpu == ["rule_embed_concepts"], kinds
    plan = json.loads((tmp_path / "slurm/results/generate/plan/plan.json").read_text())
    assert plan["work"] == [] and plan["resolution"] is not None
    res = tmp_path / "slurm/results/synthetic/synthetic"
    assert (res / "again/verify/ar.csv").read_text() == (res / "synthetic/verify/ar.csv").read_text()
