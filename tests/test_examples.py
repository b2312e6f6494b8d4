"""Every ready config in examples/: exact concept-set URLs and checksums, and a fast dry run whose jobs do not
grow with the number of neurons (one job per model / probe / concept set / shard / tau, never per neuron)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from helpers import REPO, snakemake_cmd, snakemake_env

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# the paper's real setups (the trained world's example is checked by tests/test_trained_world.py)
PAPER_EXAMPLES = [p for p in EXAMPLES if p.stem != "trained_world"]
RAW = "https://raw.githubusercontent.com/Trustworthy-ML-Lab/CLIP-dissect/master/data/"
# CLIP-Dissect's published concept lists (sha256 of the files at these URLs)
KNOWN_LISTS = {
    RAW + "broden_labels_clean.txt": "603036d4b138c66455e1285bd915f6cdcdf4728df7a5563843d1f89c9babe64b",
    RAW + "3k.txt": "425845cf228cf91200e25cbf0361cc078502ce1cc2f9d4558b29abe78096afe1",
    RAW + "10k.txt": "d6b3e04f1ac30be6525d41474166c0bff28486ecd8c48dcb0ab9c7c9cc05ed86",
    RAW + "20k.txt": "4ed6e5336d7760d281f7e72df31827da880c861363e820d8c65666b0f10d9ac0",
    RAW + "imagenet_labels.txt": "8b243a5b56f530010b42d64d8ef33c2660224447aded823f4d9de2cb1902a70e",
    RAW + "categories_places365.txt": "2affba635eb657e7ca95f4e6cc69bd9fac29ef4c32aeb83cafdfcd06ec6a1ea6",
}
SHARED_LISTS = Path("/work/shared/concepts")  # a local copy of those lists, where there is one
PATH_KEYS = {"weights", "ground_truth", "path", "root", "spec"}
FILE_SUFFIXES = (".pth", ".pt", ".tar", ".bin", ".safetensors", ".txt", ".yaml", ".csv", ".json")


def test_there_are_examples():
    names = {p.name for p in EXAMPLES}
    assert "eurosat_resnet18.yaml" in names, names


def test_shared_copies_match_known_checksums():
    if not SHARED_LISTS.is_dir():
        pytest.skip("no local copy of the CLIP-Dissect lists")
    for url, digest in KNOWN_LISTS.items():
        f = SHARED_LISTS / url.rsplit("/", 1)[1]
        if f.is_file():
            assert hashlib.sha256(f.read_bytes()).hexdigest() == digest, f


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_concept_sets_are_exact_urls_with_checksums(path):
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert cfg["concept_sets"], path
    for name, spec in cfg["concept_sets"].items():
        if "synthetic" in spec:
            continue
        assert "url" in spec and "sha256" in spec, f"{path.name}: concept set {name} needs url + sha256"
        assert spec["url"] in KNOWN_LISTS, f"{path.name}: {name}: {spec['url']} is not a CLIP-Dissect list"
        assert spec["sha256"] == KNOWN_LISTS[spec["url"]], f"{path.name}: {name}: wrong sha256"


def fake_paths(obj, root: Path, key: str = ""):
    """Replace every local path of a config (weights, ground_truth, probe folders, ...) by one that exists."""
    if isinstance(obj, dict):
        return {k: fake_paths(v, root, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [fake_paths(v, root, key) for v in obj]
    if key in PATH_KEYS and isinstance(obj, str) and obj.startswith(("/", "~", "./", "../")):
        target = root / re.sub(r"[^A-Za-z0-9_.-]", "_", obj.strip("/~."))
        if obj.endswith(FILE_SUFFIXES):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("placeholder\n", encoding="utf-8")
        else:
            target.mkdir(parents=True, exist_ok=True)
        return str(target)
    return obj


def dry_run(cfg: dict, work: Path) -> tuple[Counter, float]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    cmd = snakemake_cmd(
        "-n",
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(work),
        "--configfile",
        str(work / "config.yaml"),
        "--cores",
        "1",
        "--nolock",
        "--quiet",
        "rules",
    )
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, (
        f"dry run of {work.name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    )
    counts = Counter()
    for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", proc.stdout, re.M):
        if m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    assert counts, proc.stdout[-3000:]
    return counts, seconds


@pytest.mark.workflow
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_dry_run_is_fast_and_has_no_per_neuron_jobs(path, tmp_path):
    cfg = fake_paths(yaml.safe_load(path.read_text(encoding="utf-8")), tmp_path / "data")
    counts, seconds = dry_run(cfg, tmp_path / path.stem)
    assert seconds < 120, f"dry run took {seconds:.0f} s"
    n_models, n_probes, n_sets = len(cfg["models"]), len(cfg["probes"]), len(cfg["concept_sets"])
    shards = cfg.get("generator", {}).get("shards", 8)
    taus = len((cfg.get("sweeps") or {}).get("select.tau", [])) or 1
    bound = n_models * n_probes * n_sets * taus
    for rule, n in counts.items():
        limit = max(bound, shards) if rule == "generate_shard" else bound
        assert n <= limit, f"{path.name}: rule {rule} has {n} jobs (at most {limit}: no per-neuron jobs)"
    assert counts["probe_activations"] == n_models * n_probes
    # which shards become GPU jobs is decided by the generation plan (a checkpoint) when the run gets there
    assert counts["generation_plan"] == 1 and counts.get("generate_shard", 0) <= shards
    # the whole analysis, not just a part of it: the paper's whole table (issue 16)
    assert {"select_neurons", "hypothesize", "activation_rate"} <= set(counts), counts
    whole_table = {
        "clip_dissect",
        "final_layer_metrics",
        "stage_ablation_table",
        "sweep_table",
        "ablate_neurons",
    }
    assert whole_table <= set(counts), whole_table - set(counts)


@pytest.mark.parametrize("path", PAPER_EXAMPLES, ids=[p.stem for p in PAPER_EXAMPLES])
def test_paper_examples_configure_the_whole_table(path):
    """Issue 16: each paper setup asks for all of its table: a final-layer model with its class list (a
    CLIP-Dissect list by exact URL and checksum, or a local file), both methods, the stage ablations, the tau
    sweep 4..12 and a neuron ablation (Fig. 6); generated by SDXL base, the paper's generator."""
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    finals = {n: m for n, m in cfg["models"].items() if m.get("ground_truth")}
    assert finals, f"{path.name}: no final-layer model with ground_truth"
    for name, spec in finals.items():
        assert spec["layer"] in ("fc", "heads.head"), (path.name, name)
        gt = spec["ground_truth"]
        if isinstance(gt, dict):
            assert gt["url"] in KNOWN_LISTS and gt["sha256"] == KNOWN_LISTS[gt["url"]], (path.name, name)
            assert gt.get("clean", "none") == ("places365" if "places365" in gt["url"] else "none")
        else:
            assert (REPO / gt).is_file(), f"{path.name}: {name}: {gt} is not in the repository"
    assert cfg["hypothesize"]["methods"] == ["sieve", "clip_dissect"]
    assert cfg["evaluate"]["stage_ablations"] is True
    # Fig. 6 on a penultimate entry only (a final-layer neuron is a class), with the placeholder said to be one
    ablate = cfg["evaluate"]["ablate_neurons"]
    assert ablate and set(ablate) <= set(cfg["models"]) - set(finals), (path.name, ablate)
    assert "placeholder" in path.read_text(encoding="utf-8"), path.name
    assert cfg["sweeps"]["select.tau"] == [4, 6, 8, 10, 12]
    gen = cfg["generator"]
    assert (gen["model"], gen["steps"], gen["guidance_scale"]) == (
        "stabilityai/stable-diffusion-xl-base-1.0",
        50,
        5.0,
    )
