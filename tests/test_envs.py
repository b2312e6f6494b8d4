"""Software environments and profiles: what can be checked without reaching conda channels or a cluster.

- envs/*.yaml parse, use conda-forge + nodefaults, pin every package, install sieve itself (`-e ../`), and
  agree with pyproject.toml's dependencies;
- every rule of the workflow (parsed with snakemake's API) has conda, log, benchmark, threads and resources;
- profiles/slurm covers every rule: GPU rules ask for one GPU, CPU rules are grouped, memory and runtime
  grow with `attempt`; profiles/local gives every GPU rule one `gpu` so two never share one GPU.
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
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]), workdir=workdir,
                      config_settings=ConfigSettings(configfiles=[workdir / "config.yaml"]))._workflow
    rules = []
    for r in wf.rules:
        res = {}
        for k, v in r.resources.items():
            try:
                res[k] = v.value if isinstance(v.value, (int, str)) else None
            except ValueError:  # a function of the job
                res[k] = None
        rules.append({"name": r.name, "conda": r.conda_env, "log": [str(x) for x in r.log],
                      "benchmark": str(r.benchmark) if r.benchmark else None, "resources": res,
                      "local": r.name in wf._localrules, "script": r.script,
                      "is_target_only": not r.output})
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
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        m = re.search(rf"^rule {name}:\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
        if m:
            return m.group(1)
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


def test_every_rule_has_conda_log_benchmark_threads_resources(rules):
    jobs = _job_rules(rules)
    assert {"probe_activations", "select_neurons"} <= set(jobs)
    assert rules["prefetch"]["local"], "prefetch must run where snakemake runs (the login node)"
    for name, r in jobs.items():
        assert r["conda"] in ("../../envs/gpu.yaml", "../../envs/cpu.yaml"), f"rule {name}: conda: {r['conda']}"
        assert (REPO / "workflow" / "rules" / r["conda"]).resolve().is_file()
        assert r["log"], f"rule {name} has no log:"
        assert r["benchmark"] and r["benchmark"].startswith("benchmarks/"), f"rule {name}: benchmark"
        assert re.search(r"^    threads:", _rule_text(name), re.M), f"rule {name} has no threads:"
        for key in ("mem_mb", "runtime"):
            assert isinstance(r["resources"].get(key), int), f"rule {name} has no resources: {key}"
        assert r["script"] is None or r["script"].startswith("../scripts/"), f"rule {name}: script {r['script']}"


def _eval(expr, attempt: int) -> int:
    return int(eval(str(expr), {"attempt": attempt}))  # noqa: S307 - the profile's own expressions


def test_slurm_profile_covers_every_rule(rules):
    profile = yaml.safe_load(SLURM.read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    set_res, groups = profile["set-resources"], profile["groups"]
    jobs = {n: r for n, r in _job_rules(rules).items() if not r["local"]}
    assert not set(set_res) - set(jobs), f"profiles/slurm names rules that do not exist: {set(set_res) - set(jobs)}"
    assert not set(groups) - set(jobs), f"profiles/slurm groups rules that do not exist: {set(groups) - set(jobs)}"
    for name, r in jobs.items():
        gpu = r["conda"].endswith("gpu.yaml")
        snippet = (f"set-resources:\n  {name}:\n" + (f"    gpu: 1\n    cpus_per_gpu: {r['resources'].get('_cores')}\n"
                                                      if gpu else "")
                   + f"    mem_mb: \"{r['resources'].get('mem_mb')} * attempt\"\n"
                   + f"    runtime: \"{r['resources'].get('runtime')} * attempt\"\n"
                   + ("" if gpu else f"groups:\n  {name}: {name}\ngroup-components:\n  {name}: 16\n"))
        assert name in set_res, f"rule {name} is missing from profiles/slurm/profile.yaml; add\n{snippet}"
        res = set_res[name]
        for key in ("mem_mb", "runtime"):
            first, second = _eval(res[key], 1), _eval(res[key], 2)
            assert first >= r["resources"][key], f"profiles/slurm {name}.{key}={first} < the rule's own"
            assert second > first, f"profiles/slurm {name}.{key} does not grow with attempt"
        if gpu:
            assert res.get("gpu") == 1 and res.get("cpus_per_gpu", 0) >= 1, f"GPU rule {name} asks for no GPU"
            assert name not in groups, f"GPU rule {name} must not share a job with CPU rules"
        else:
            assert "gpu" not in res, f"CPU rule {name} asks for a GPU"
            assert name in groups, f"CPU rule {name} is neither grouped nor a local rule; add\n{snippet}"
    for group in set(groups.values()):
        assert profile.get("group-components", {}).get(group, 1) >= 1


def test_local_profile_gives_gpu_rules_one_gpu(rules):
    profile = yaml.safe_load(LOCAL.read_text())
    assert profile["resources"]["gpu"] == 1
    jobs = _job_rules(rules)
    gpu_rules = {n for n, r in jobs.items() if r["conda"].endswith("gpu.yaml") and not r["local"]}
    listed = {n for n, v in profile["set-resources"].items() if v.get("gpu") == 1}
    assert gpu_rules and listed == gpu_rules, (
        f"profiles/local/profile.yaml set-resources: add `gpu: 1` for {sorted(gpu_rules - listed)}, "
        f"remove {sorted(listed - gpu_rules)}")


def test_slurm_profile_groups_build_a_dag(tmp_path):
    """The profile's groups form no cycle with the GPU jobs: a dry run of the default workflow plans them."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
           "--profile", str(SLURM.parent)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "Group job select" in text and re.search(r"^rule probe_activations:", text, re.M)
