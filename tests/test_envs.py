"""Software environments and resources: what can be checked without reaching conda channels or a cluster.

- envs/*.yaml parse, use conda-forge + nodefaults, pin every package, install sieve itself (`-e ../`), and
  agree with pyproject.toml's dependencies;
- every rule of the workflow (parsed with snakemake's API) states conda, log, benchmark, threads and its
  resources: memory and runtime that grow with `attempt`, one GPU (and its CPUs) for the rules that run a
  network, a group for the CPU rules that SLURM should pack together;
- the profiles carry only site policy (no per-rule table), and profiles/local's `gpu` total keeps two GPU
  jobs off one GPU.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import REPO, snakemake_env

ENVS = {"gpu": REPO / "envs" / "gpu.yaml", "cpu": REPO / "envs" / "cpu.yaml"}
SLURM = REPO / "profiles" / "slurm" / "profile.yaml"
LOCAL = REPO / "profiles" / "local" / "profile.yaml"

DUMP_RULES = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

workdir = Path(sys.argv[2])


def evaluate(resource, attempt, threads):
    # a rule's resource at an attempt: its value, or None where it needs a job's wildcards (batch sizes)
    try:
        value = resource.evaluate({}, attempt=attempt, threads=threads).value
    except Exception:  # a function of the job's wildcards
        return None
    return value if isinstance(value, (int, str)) else None


with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]), workdir=workdir,
                      config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]))._workflow
    rules = []
    for r in wf.rules:
        threads = r.resources["_cores"].value
        res = {k: [evaluate(v, 1, threads), evaluate(v, 2, threads)] for k, v in r.resources.items()
               if not k.startswith("_")}
        # r._group: the rule's own group (r.group reads None outside cluster execution and dry runs)
        rules.append({"name": r.name, "conda": r.conda_env, "log": [str(x) for x in r.log],
                      "benchmark": str(r.benchmark) if r.benchmark else None, "resources": res,
                      "threads": threads, "group": r._group, "local": r.name in wf._localrules,
                      "script": r.script, "is_target_only": not r.output})
json.dump(rules, sys.stdout)
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    """Every rule of the workflow, parsed with the repository's default config.yaml."""
    work = tmp_path_factory.mktemp("parse")
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    proc = subprocess.run([sys.executable, "-c", DUMP_RULES, str(REPO / "Snakefile"), str(work)],
                          capture_output=True, text=True, env=snakemake_env(), cwd=work, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {r["name"]: r for r in json.loads(proc.stdout)}


def _job_rules(rules: dict[str, dict]) -> dict[str, dict]:
    """Rules that run something (not the `all` target)."""
    return {n: r for n, r in rules.items() if not r["is_target_only"]}


def _rule_text(name: str) -> str:
    """The body of a rule in workflow/rules/*.smk; for a rule derived with `use rule X as name`, X's body (which
    holds what the derived rule does not restate: threads, resources, conda)."""
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        m = re.search(rf"^(?:rule|checkpoint) {name}:\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
        if m:
            return m.group(1)
        m = re.search(rf"^use rule (\w+) as {name} with:", text, re.M)
        if m:
            return _rule_text(m.group(1))
    raise AssertionError(f"rule {name} not found in workflow/rules/*.smk")


def _pip_pins(env: dict) -> tuple[dict[str, Requirement], list[str]]:
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins, other = {}, []
    for line in pip:
        if line.startswith("-"):
            other.append(line)
            continue
        req = Requirement(line)
        pins[canonicalize_name(req.name)] = req
    return pins, other


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_env_files_are_pinned_and_install_sieve(kind):
    env = yaml.safe_load(ENVS[kind].read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(re.fullmatch(r"python=3\.\d+", d) for d in conda_deps), conda_deps
    pins, other = _pip_pins(env)
    for name, req in pins.items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{ENVS[kind].name}: {name} is not pinned ({req})"
    assert "-e ../" in other, f"{ENVS[kind].name} does not install the sieve package itself (-e ../)"
    assert (ENVS[kind].parent / ".." / "pyproject.toml").is_file()
    assert "torch" in pins and "torchvision" in pins
    cuda_free = kind == "cpu"
    assert (Version(next(iter(pins["torch"].specifier)).version).local == "cpu") is cuda_free


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_env_versions_agree_with_pyproject(kind):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins, _ = _pip_pins(yaml.safe_load(ENVS[kind].read_text()))
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in pins, f"{ENVS[kind].name} lacks {req.name}, a dependency in pyproject.toml"
        pinned = Version(next(iter(pins[name].specifier)).version)
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{ENVS[kind].name} pins {req.name}=={pinned}, outside pyproject.toml's {req.specifier}")
    python = next(d for d in yaml.safe_load(ENVS[kind].read_text())["dependencies"] if str(d).startswith("python="))
    assert Requirement(f"python{project['requires-python']}").specifier.contains(python.split("=")[1] + ".0")


def test_env_pins_are_identical_across_envs():
    gpu, _ = _pip_pins(yaml.safe_load(ENVS["gpu"].read_text()))
    cpu, _ = _pip_pins(yaml.safe_load(ENVS["cpu"].read_text()))
    assert set(gpu) == set(cpu)
    for name in gpu:
        vg, vc = (Version(next(iter(p[name].specifier)).version) for p in (gpu, cpu))
        assert vg.public == vc.public, f"{name}: gpu.yaml {vg} vs cpu.yaml {vc}"


def _runs_a_network(rule: dict) -> bool:
    """Rules whose jobs run a network (the GPU environment), except local rules (prefetch only downloads)."""
    return rule["conda"].endswith("gpu.yaml") and not rule["local"]


def test_every_rule_has_conda_log_benchmark_threads_resources(rules):
    jobs = _job_rules(rules)
    assert {"probe_activations", "select_neurons", "stage_ablation_table", "sweep_select"} <= set(jobs)
    assert rules["prefetch"]["local"], "prefetch must run where snakemake runs (the login node)"
    for name, r in jobs.items():
        assert r["conda"] in ("../../envs/gpu.yaml", "../../envs/cpu.yaml"), f"rule {name}: conda: {r['conda']}"
        assert (REPO / "workflow" / "rules" / r["conda"]).resolve().is_file()
        assert r["log"], f"rule {name} has no log:"
        assert r["benchmark"] and r["benchmark"].startswith("benchmarks/"), f"rule {name}: benchmark"
        assert re.search(r"^    threads:", _rule_text(name), re.M), f"rule {name} has no threads:"
        assert r["threads"] >= 1, f"rule {name}: threads {r['threads']}"
        assert r["script"] is None or r["script"].startswith("../scripts/"), f"rule {name}: script {r['script']}"


def test_memory_and_runtime_grow_with_attempt(rules):
    """A job killed for memory or time is retried (profiles/slurm `retries:`) with more of both."""
    for name, r in _job_rules(rules).items():
        for key in ("mem_mb", "runtime"):
            first, second = r["resources"].get(key, [None, None])
            assert isinstance(first, int) and first > 0, f"rule {name} has no resources: {key}"
            assert second == 2 * first, f"rule {name}: {key} does not grow with attempt ({first}, {second})"


def test_network_rules_ask_for_a_gpu_and_cpu_rules_are_grouped(rules):
    """GPU rules: one GPU and their threads as --cpus-per-gpu, each its own SLURM job; CPU rules: no GPU, and a
    group so that SLURM runs their small jobs together; local rules neither."""
    jobs = _job_rules(rules)
    gpu_rules = {n for n, r in jobs.items() if _runs_a_network(r)}
    assert {"probe_activations", "generate_shard", "stage_ablation_embed_crops", "sweep_embed_crops"} <= gpu_rules
    for name, r in jobs.items():
        res = r["resources"]
        if name in gpu_rules:
            assert res.get("gpu") == [1, 1], f"GPU rule {name} asks for no GPU (resources: gpu=1)"
            assert res.get("cpus_per_gpu") == [r["threads"]] * 2, f"GPU rule {name}: cpus_per_gpu != threads"
            assert r["group"] is None, f"GPU rule {name} must not share a job with CPU rules"
        else:
            assert "gpu" not in res and "cpus_per_gpu" not in res, f"CPU rule {name} asks for a GPU"
            assert r["local"] or r["group"], f"CPU rule {name} is neither grouped nor a local rule"


def test_slurm_profile_is_site_policy_only(rules):
    """profiles/slurm names no rule (what a job needs is in its rule) and packs every group the rules use."""
    profile = yaml.safe_load(SLURM.read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1 and profile["keep-going"] is True
    assert not {"set-resources", "groups"} & set(profile), sorted(profile)
    used = {r["group"] for r in _job_rules(rules).values() if r["group"]}
    assert set(profile["group-components"]) == used, (
        f"profiles/slurm group-components: add {sorted(used - set(profile['group-components']))}, "
        f"remove {sorted(set(profile['group-components']) - used)}")
    assert all(n >= 1 for n in profile["group-components"].values())


def test_local_profile_has_one_gpu_and_no_rule_table():
    profile = yaml.safe_load(LOCAL.read_text())
    assert profile["resources"]["gpu"] == 1
    assert "set-resources" not in profile


def test_slurm_profile_groups_build_a_dag(tmp_path):
    """The rules' groups form no cycle with the GPU jobs: a dry run of the default workflow (stage ablations
    on) and of a tau sweep plans them."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["sweeps"] = {"select.tau": [1.5, 20]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
           "--profile", str(SLURM.parent)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "Group job select" in text and re.search(r"^rule probe_activations:", text, re.M)
    assert re.search(r"^\s+rule sweep_select:", text, re.M) and re.search(r"^rule sweep_embed_crops:", text, re.M)
