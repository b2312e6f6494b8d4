"""The generation cache is checksummed and heals itself; a rerun with nothing to generate queues no GPU job.

Unit tests run the shard and the plan on the tiny diffusion generator of tests/tinydiffusion.py (as
test_verify.py does); the workflow tests inject faults into their own copy of the finished default run (the
planted world; tests/conftest.py's ``default_run``, shared) and check that a plain `snakemake` restores
byte-identical results, and that a concept set whose concepts were all generated before submits no
`generate_shard` job (issues 12 and 15).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_verify import MODEL, N_NEURONS, Counting, gen_spec, generate_all, select_summary, write_hyp

from helpers import DEFAULT_RUN_TIMEOUT_S, jobs_run, run_snakemake
from sieve.io import read_json, write_json
from sieve.verify import VerifyError
from sieve.verify.activation_rate import run_activation_rate
from sieve.verify.cache import (
    DAMAGED,
    INTACT,
    MISSING,
    UNRECORDED,
    CacheEntry,
    adopt_checksums,
    checksum_path,
    file_status,
    write_cache_file,
)
from sieve.verify.plan import PLAN_FILE, audit_plan, plan_generation, planned_manifest_path
from sieve.verify.requests import run_requests
from sieve.verify.shard import plan_shard

CONCEPTS = ["red", "blue", "green", "sky"]


def _damage(path: Path, how: str) -> None:
    """Delete, truncate, empty, or rewrite as a valid file with other values (what a user or a disk can do)."""
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "alter":
        with np.load(path) as z:
            seeds, pooled = z["seeds"], z["pooled"]
        with open(path, "wb") as fh:
            np.savez(fh, seeds=seeds, pooled=pooled + 100.0)
    else:
        raise ValueError(how)


def _tiny_cache(tmp_path: Path, shards: int = 1) -> tuple[dict, dict, Path, list[dict]]:
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [CONCEPTS[:2]])
    write_hyp(hyp, 1, [CONCEPTS[2:]])
    spec = gen_spec(shards=shards)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], shards)
    manifests = generate_all(req, spec, tmp_path)
    return req, spec, hyp, manifests


def _acts(manifests: list[dict]) -> list[Path]:
    return [Path(c["acts"]["tiny"]) for m in manifests for c in m["concepts"]]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p): (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_cache_files_record_their_checksum(tmp_path):
    path = tmp_path / "e" / "acts" / "m.npz"
    path.parent.mkdir(parents=True)
    write_cache_file(path, b"payload")
    assert checksum_path(path).read_text().strip() == hashlib.sha256(b"payload").hexdigest()
    assert file_status(path) == INTACT
    path.write_bytes(b"pay1oad")
    assert file_status(path) == DAMAGED
    checksum_path(path).unlink()
    assert file_status(path) == UNRECORDED  # a cache written before checksums existed
    path.unlink()
    assert file_status(path) == MISSING


@pytest.mark.parametrize("how", ["truncate", "empty", "alter", "delete"])
def test_shard_regenerates_damaged_activations_and_logs_their_path(tmp_path, caplog, how):
    req, spec, _, first = _tiny_cache(tmp_path)
    acts = _acts(first)
    want = {p: np.load(p)["pooled"].copy() for p in acts}
    bad = acts[1]
    _damage(bad, how)
    counter = Counting()
    with caplog.at_level(logging.WARNING):
        again = generate_all(req, spec, tmp_path, counter=counter)[0]
    assert again["n_generated"] == len(again["seeds"])  # that concept only, all its seeds
    assert again["n_cached"] == (len(CONCEPTS) - 1) * len(again["seeds"])
    assert file_status(bad) == INTACT
    for p in acts:  # (float32 rounding differs with the batch a concept is measured in)
        np.testing.assert_allclose(np.load(p)["pooled"], want[p], rtol=1e-5, atol=1e-5)
    if how != "delete":
        assert str(bad) in caplog.text


@pytest.mark.parametrize("how", ["truncate", "empty", "alter"])
def test_activation_rate_names_a_damaged_file(tmp_path, how):
    _, _, hyp, manifests = _tiny_cache(tmp_path)
    bad = _acts(manifests)[0]
    _damage(bad, how)
    sel = tmp_path / "select.json"
    write_json(sel, select_summary(np.zeros(N_NEURONS), {0, 1}))
    with pytest.raises(VerifyError, match="run snakemake again") as err:
        run_activation_rate(
            str(hyp),
            str(sel),
            [str(tmp_path / "shards/0.json")],
            "tiny",
            *(str(tmp_path / f) for f in ("ar.csv", "s.json", "nc.csv")),
        )
    assert str(bad) in str(err.value)


def test_a_cache_without_checksums_stays_valid_and_gets_them(tmp_path):
    req, spec, _, manifests = _tiny_cache(tmp_path)
    for rec in (tmp_path / "cache").rglob("*.sha256"):
        rec.unlink()
    acts = _acts(manifests)
    _damage(acts[0], "truncate")  # damaged before checksums existed: regenerated, not adopted
    entries = [
        CacheEntry(tmp_path / "cache", manifests[0]["generator_key"], c["key"])
        for c in manifests[0]["concepts"]
    ]
    mkey = manifests[0]["models"]["tiny"]["key"]
    plan = plan_shard(entries, manifests[0]["seeds"], "thumbnails", [mkey])
    assert {ci for ci, _ in plan.generate} == {0}
    files = [f for e in entries for f in e.files([mkey], manifests[0]["seeds"])]
    n = adopt_checksums(files)
    assert n == len([f for f in files if f.is_file()]) - 1
    assert file_status(acts[1]) == INTACT and file_status(acts[0]) == UNRECORDED
    counter = Counting()
    assert generate_all(req, spec, tmp_path, counter=counter)[0]["n_generated"] == len(manifests[0]["seeds"])


def test_plan_sends_only_shards_with_work_to_a_job_and_audits_read_only(tmp_path, capsys):
    spec = gen_spec(shards=2)
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [CONCEPTS])
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 2)
    cache, plan_dir = tmp_path / "cache", tmp_path / "plan"

    def plan(audit: str = "") -> dict:
        shutil.rmtree(plan_dir, ignore_errors=True)  # Snakemake removes a job's output folder first
        return plan_generation(
            req,
            spec,
            {"tiny": MODEL},
            "cpu",
            str(cache),
            str(tmp_path / "requests.json"),
            str(plan_dir),
            audit=audit,
        )

    assert plan()["work"] == [0, 1]  # no shard of these settings has run: every shard is a job
    assert audit_plan(plan_dir, cache) != ""  # what the plan relies on is not there yet
    jobs = generate_all(req, spec, tmp_path)
    assert audit_plan(plan_dir, cache) == ""  # now it is: the token the plan recorded

    p = plan("t0")
    assert p["work"] == [] and [s["n_concepts"] for s in p["shards"]] == req["per_shard"]
    for k, job in enumerate(jobs):  # the plan's manifest is the one a job finding everything cached writes
        planned = read_json(planned_manifest_path(plan_dir, k))
        for key in ("n_generated", "n_cached", "seconds", "generate_seconds", "images_per_second", "device"):
            planned.pop(key), job.pop(key)
        assert planned == job
    assert audit_plan(plan_dir, cache) == "t0"

    before = _snapshot(tmp_path)
    victim = _acts(jobs)[2]
    _damage(victim, "alter")
    before[str(victim)] = (victim.stat().st_mtime_ns, victim.read_bytes())
    token = audit_plan(plan_dir, cache)
    assert token not in ("", "t0")
    assert _snapshot(tmp_path) == before  # the audit only reads (it runs in dry runs too)
    assert str(victim.parent.parent) in capsys.readouterr().err
    damaged_shard = next(k for k, m in enumerate(jobs) if str(victim) in str(m["concepts"]))
    assert plan(token)["work"] == [damaged_shard]
    generate_all(req, spec, tmp_path)
    assert audit_plan(plan_dir, cache) == token  # repaired: equal to what this plan recorded, nothing reruns


# ------------------------------------------------------------------------------------------------ workflow
RUN = "results/synthetic/synthetic/synthetic"
OUTPUTS = [
    f"{RUN}/verify/ar.csv",
    f"{RUN}/neuron_concepts.csv",
    f"{RUN}/truth.csv",
    "results/stage_ablations/synthetic/synthetic/synthetic/ablations.json",
]
GPU_RULES = ("generate_shard", "stage_ablation_generate_shard")


@pytest.fixture
def finished(default_run, default_run_copy):
    """A private copy of the finished default run (the planted world, two shards, the stage ablations), its
    config, and the outputs that every repair must restore byte for byte (read from the shared original)."""
    return default_run_copy, default_run.config(), {f: (default_run.path / f).read_bytes() for f in OUTPUTS}


def _nothing_to_do(work: Path) -> None:
    dry = run_snakemake(work, None, extra=("-n",))
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:]


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.timeout(DEFAULT_RUN_TIMEOUT_S + 900)  # the shared default run (if first), the damage, the rerun
def test_plain_rerun_after_removing_the_generation_folder(finished):
    """Issue 15 item 1: the stage ablations' manifests point into the shared cache; removing it (first thing
    after a fresh run, when nothing else has changed the plans' audit) is repaired by a plain rerun."""
    work, _, want = finished
    shutil.rmtree(work / "results/generate")
    ran = jobs_run(run_snakemake(work, None))
    assert ran["generate_shard"] == 2
    for f, data in want.items():
        assert (work / f).read_bytes() == data, f
    _nothing_to_do(work)


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.timeout(DEFAULT_RUN_TIMEOUT_S + 900)  # the shared default run (if first), the damage, the rerun
def test_plain_rerun_heals_a_damaged_cache(finished):
    work, _, want = finished
    cache = work / "results/generate/cache"
    acts = sorted(cache.rglob("*.npz"))
    thumbs = sorted(cache.rglob("*.jpg"))
    damaged = list(zip(acts[:4], ["delete", "truncate", "empty", "alter"], strict=True))
    for path, how in damaged:
        _damage(path, how)
    thumbs[3].unlink()
    thumbs[11].write_bytes(thumbs[11].read_bytes()[:40])

    before = _snapshot(work / "results")
    dry = jobs_run(run_snakemake(work, None, extra=("-n",)))
    assert dry["generation_requests"] == 1  # the damage is noticed when the workflow starts
    assert _snapshot(work / "results") == before  # and a dry run changes nothing

    ran = jobs_run(run_snakemake(work, None))
    assert 1 <= ran["generate_shard"] <= 2 and ran["stage_ablation_generate_shard"] == 0
    for f, data in want.items():
        assert (work / f).read_bytes() == data, f
    for path in [p for p, _ in damaged] + [thumbs[3], thumbs[11]]:
        assert file_status(path) == INTACT, path
    _nothing_to_do(work)  # and no needless job (GPU or not) on the following run


@pytest.mark.workflow
@pytest.mark.slow
@pytest.mark.timeout(DEFAULT_RUN_TIMEOUT_S + 900)  # the shared default run (if first), the damage, the rerun
def test_a_concept_set_of_cached_concepts_submits_no_gpu_job(finished):
    """Issue 12: a new concept set whose concepts were all generated before runs no generate_shard job."""
    work, cfg, want = finished
    cfg = {**cfg, "concept_sets": {**cfg["concept_sets"], "again": dict(cfg["concept_sets"]["synthetic"])}}
    ran = jobs_run(run_snakemake(work, cfg))
    assert ran["activation_rate"] == 2 and ran["hypothesize"] == 1
    assert all(ran[r] == 0 for r in GPU_RULES), ran
    assert read_json(work / "results/generate/plan" / PLAN_FILE)["work"] == []
    again = work / "results/synthetic/synthetic/again"
    assert (again / "verify/ar.csv").read_bytes() == want[f"{RUN}/verify/ar.csv"]
    for f, data in want.items():
        assert (work / f).read_bytes() == data, f
