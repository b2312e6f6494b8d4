"""Software environments and resources: what can be checked without reaching conda channels or a cluster.

- envs/*.yaml parse, use conda-forge + nodefaults, pin every package (their pip sections are the locks
  envs/*.lock.txt, which agree with envs/requirements.in and pyproject.toml), and install no path: pip, run
  where conda runs it under `--sdm conda` (beside Snakemake's copy in .snakemake/conda/), resolves nothing
  against that folder;
- a job imports the sieve of the checkout being run, even with another copy ahead on its path;
- every rule of the workflow (parsed with snakemake's API) states conda, log, benchmark, threads and its
  resources: memory and runtime that grow with `attempt`, one GPU (and its CPUs) for the rules that run a
  network, a group for the CPU rules that SLURM should pack together;
- the profiles carry only site policy (no per-rule table), and profiles/local's `gpu` total keeps two GPU
  jobs off one GPU.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import REPO, make_image_folder, snakemake_cmd, snakemake_env, tiny_config

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
    proc = subprocess.run(
        [sys.executable, "-c", DUMP_RULES, str(REPO / "Snakefile"), str(work)],
        capture_output=True,
        text=True,
        env=snakemake_env(),
        cwd=work,
        timeout=120,
    )
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
def test_env_files_are_pinned(kind):
    env = yaml.safe_load(ENVS[kind].read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda_deps = [d for d in env["dependencies"] if isinstance(d, str)]
    assert any(re.fullmatch(r"python=3\.\d+", d) for d in conda_deps), conda_deps
    pins, other = _pip_pins(env)
    for name, req in pins.items():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", (
            f"{ENVS[kind].name}: {name} is not pinned ({req})"
        )
    # sieve itself comes from the checkout being run (workflow/scripts/use_checkout.py), never from the env
    assert all(not line.startswith(("-e", "-r", "-c")) for line in other), other
    assert "sieve" not in pins
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
            f"{ENVS[kind].name} pins {req.name}=={pinned}, outside pyproject.toml's {req.specifier}"
        )
    python = next(
        d for d in yaml.safe_load(ENVS[kind].read_text())["dependencies"] if str(d).startswith("python=")
    )
    assert Requirement(f"python{project['requires-python']}").specifier.contains(python.split("=")[1] + ".0")


def test_env_pins_are_identical_across_envs():
    """The CPU env has the GPU env's pins, less the CUDA libraries (and PyTorch's +cpu builds)."""
    gpu, _ = _pip_pins(yaml.safe_load(ENVS["gpu"].read_text()))
    cpu, _ = _pip_pins(yaml.safe_load(ENVS["cpu"].read_text()))
    cuda = {n for n in gpu if re.match(r"nvidia-|cuda-|triton$", n)}
    assert cuda and set(gpu) - cuda == set(cpu)
    for name in cpu:
        vg, vc = (Version(next(iter(p[name].specifier)).version) for p in (gpu, cpu))
        assert vg.public == vc.public, f"{name}: gpu.yaml {vg} vs cpu.yaml {vc}"


def _runs_a_network(rule: dict) -> bool:
    """Rules whose jobs run a network (the GPU environment), except local rules (prefetch only downloads)."""
    return rule["conda"].endswith("gpu.yaml") and not rule["local"]


@pytest.mark.workflow
def test_every_rule_has_conda_log_benchmark_threads_resources(rules):
    jobs = _job_rules(rules)
    assert {"probe_activations", "select_neurons", "stage_ablation_table", "sweep_select"} <= set(jobs)
    assert rules["prefetch"]["local"], "prefetch must run where snakemake runs (the login node)"
    for plan in ("generation_plan", "stage_ablation_generation_plan"):
        assert rules[plan]["local"], f"{plan} decides on a CPU where snakemake runs, without a queue wait"
    for name, r in jobs.items():
        assert r["conda"] in ("../../envs/gpu.yaml", "../../envs/cpu.yaml"), (
            f"rule {name}: conda: {r['conda']}"
        )
        assert (REPO / "workflow" / "rules" / r["conda"]).resolve().is_file()
        assert r["log"], f"rule {name} has no log:"
        assert r["benchmark"] and r["benchmark"].startswith("benchmarks/"), f"rule {name}: benchmark"
        assert re.search(r"^    threads:", _rule_text(name), re.M), f"rule {name} has no threads:"
        assert r["threads"] >= 1, f"rule {name}: threads {r['threads']}"
        assert r["script"] is None or r["script"].startswith("../scripts/"), (
            f"rule {name}: script {r['script']}"
        )


@pytest.mark.workflow
def test_memory_and_runtime_grow_with_attempt(rules):
    """A job killed for memory or time is retried (profiles/slurm `retries:`) with more of both."""
    for name, r in _job_rules(rules).items():
        for key in ("mem_mb", "runtime"):
            first, second = r["resources"].get(key, [None, None])
            assert isinstance(first, int) and first > 0, f"rule {name} has no resources: {key}"
            assert second == 2 * first, f"rule {name}: {key} does not grow with attempt ({first}, {second})"


@pytest.mark.workflow
def test_network_rules_ask_for_a_gpu_and_cpu_rules_are_grouped(rules):
    """GPU rules: one GPU and their threads as --cpus-per-gpu, each its own SLURM job; CPU rules: no GPU, and a
    group so that SLURM runs their small jobs together; local rules neither."""
    jobs = _job_rules(rules)
    gpu_rules = {n for n, r in jobs.items() if _runs_a_network(r)}
    assert {
        "probe_activations",
        "generate_shard",
        "stage_ablation_embed_crops",
        "sweep_embed_crops",
    } <= gpu_rules
    for name, r in jobs.items():
        res = r["resources"]
        if name in gpu_rules:
            assert res.get("gpu") == [1, 1], f"GPU rule {name} asks for no GPU (resources: gpu=1)"
            assert res.get("cpus_per_gpu") == [r["threads"]] * 2, f"GPU rule {name}: cpus_per_gpu != threads"
            assert r["group"] is None, f"GPU rule {name} must not share a job with CPU rules"
        else:
            assert "gpu" not in res and "cpus_per_gpu" not in res, f"CPU rule {name} asks for a GPU"
            assert r["local"] or r["group"], f"CPU rule {name} is neither grouped nor a local rule"


@pytest.mark.workflow
def test_slurm_profile_is_site_policy_only(rules):
    """profiles/slurm names no rule (what a job needs is in its rule) and packs every group the rules use."""
    profile = yaml.safe_load(SLURM.read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1 and profile["keep-going"] is True
    assert (
        profile["slurm-keep-successful-logs"] is True
    )  # the plugin deletes a successful job's log otherwise
    assert not {"set-resources", "groups"} & set(profile), sorted(profile)
    used = {r["group"] for r in _job_rules(rules).values() if r["group"]}
    assert set(profile["group-components"]) == used, (
        f"profiles/slurm group-components: add {sorted(used - set(profile['group-components']))}, "
        f"remove {sorted(set(profile['group-components']) - used)}"
    )
    assert all(n >= 1 for n in profile["group-components"].values())


def test_local_profile_has_one_gpu_and_no_rule_table():
    profile = yaml.safe_load(LOCAL.read_text())
    assert profile["resources"]["gpu"] == 1
    assert "set-resources" not in profile


@pytest.mark.workflow
def test_slurm_profile_groups_build_a_dag(tmp_path):
    """The rules' groups form no cycle with the GPU jobs: a dry run of the default workflow (stage ablations
    on) and of a tau sweep plans them."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["sweeps"] = {"select.tau": [1.5, 20]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = snakemake_cmd(
        "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--profile", str(SLURM.parent)
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, env=snakemake_env(), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "Group job select" in text and re.search(r"^rule probe_activations:", text, re.M)
    assert re.search(r"^\s+rule sweep_select:", text, re.M) and re.search(
        r"^rule sweep_embed_crops:", text, re.M
    )


# ---------------------------------------------------------------------------------------------------- locks
@functools.cache
def _update_locks():
    """envs/update_locks.py as a module (the lock parser and the CPU derivation the tests compare with)."""
    spec = importlib.util.spec_from_file_location("update_locks", REPO / "envs" / "update_locks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["update_locks"] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


LOCKS = {kind: REPO / "envs" / f"{kind}.lock.txt" for kind in ENVS}


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_env_pip_section_is_its_lock(kind):
    """The env file installs exactly its lock's pins, in its order (update_locks.py writes both)."""
    lock = LOCKS[kind].read_text()
    pip = next(
        d["pip"] for d in yaml.safe_load(ENVS[kind].read_text())["dependencies"] if isinstance(d, dict)
    )
    assert pip == _update_locks().env_pip_lines(lock, kind), (
        f"{ENVS[kind].name} differs from {LOCKS[kind].name}: run `python envs/update_locks.py`"
    )


def test_cpu_lock_is_the_gpu_lock_without_cuda():
    gpu, cpu = LOCKS["gpu"].read_text(), LOCKS["cpu"].read_text()
    assert cpu == _update_locks().derive_cpu_lock(gpu), "envs/cpu.lock.txt is stale: run envs/update_locks.py"
    _, pins = _update_locks().read_lock(cpu)
    assert pins["torch"].version.endswith("+cpu") and not any(n.startswith("nvidia-") for n in pins)


def test_gpu_lock_is_a_closed_resolution_of_requirements_in_and_pyproject():
    """Regenerating needs PyPI; offline, the lock must still agree with its inputs: requirements.in's pins are
    its direct packages at those versions (no edit of requirements.in without relocking), every other
    package is there because a locked package needs it, and pyproject.toml's dependencies are all locked
    within their ranges."""
    lock = _update_locks()
    header, pins = lock.read_lock(LOCKS["gpu"].read_text())
    assert any("python envs/update_locks.py" in line for line in header), header
    direct = {
        canonicalize_name(p.name): p.version for p in pins.values() if "-r envs/requirements.in" in p.via
    }
    wanted = {}
    for line in (REPO / "envs" / "requirements.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            wanted[canonicalize_name(req.name)] = next(iter(req.specifier)).version
    assert direct == wanted, (
        "envs/gpu.lock.txt is stale against envs/requirements.in: run envs/update_locks.py"
    )
    names = {canonicalize_name(n) for n in pins}
    for pin in pins.values():
        assert pin.via, f"{pin.name} is in the lock for no reason"
        for via in pin.via:
            assert via == "-r envs/requirements.in" or canonicalize_name(via) in names, (pin.name, via)
    versions = {canonicalize_name(p.name): Version(p.version) for p in pins.values()}
    for dep in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in versions, f"envs/gpu.lock.txt lacks {req.name}, a dependency in pyproject.toml"
        assert req.specifier.contains(versions[name], prereleases=True), (name, str(versions[name]))


def _pip_requirements_as_conda_installs_them(env_file: Path, workdir: Path) -> list:
    """What pip installs for an env file under ``snakemake --sdm conda``, with the paths resolved as they are
    there. Snakemake copies the env file to ``.snakemake/conda/<hash>.yaml`` (snakemake/deployment/conda.py,
    ``create_env``: ``env_path + ".yaml"``) and runs ``conda env create --file`` on the copy; conda writes the
    pip section to ``condaenv.*.requirements.txt`` in the copy's folder and runs ``pip install -r`` with that
    folder as its working directory (conda/env/installers/pip.py). Returns pip's own parse of that file."""
    from pip._internal.network.session import PipSession
    from pip._internal.req.constructors import install_req_from_parsed_requirement
    from pip._internal.req.req_file import parse_requirements

    conda_dir = workdir / ".snakemake" / "conda"
    conda_dir.mkdir(parents=True, exist_ok=True)
    copy = conda_dir / "0123456789abcdef.yaml"
    copy.write_text(env_file.read_text())
    env = yaml.safe_load(copy.read_text())
    specs = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    requirements = conda_dir / "condaenv.test.requirements.txt"
    requirements.write_text("\n".join(specs) + "\n")
    old = Path.cwd()
    os.chdir(conda_dir)
    try:
        return [
            install_req_from_parsed_requirement(r)
            for r in parse_requirements(requirements.name, session=PipSession())
        ]
    finally:
        os.chdir(old)


def _local_paths(reqs: list) -> list[str]:
    """The requirements that point at a local folder or file (resolved against pip's working directory)."""
    return [r.link.file_path for r in reqs if r.link is not None and r.link.is_file]


def test_conda_path_handling_is_reproduced(tmp_path):
    """The check below catches what broke before: `-e ../` in an env file means `.snakemake/`, not the
    workflow, once Snakemake has copied the file and conda runs pip beside the copy."""
    env = tmp_path / "envs" / "old.yaml"
    env.parent.mkdir()
    env.write_text(yaml.safe_dump({"dependencies": ["pip", {"pip": ["numpy==2.4.6", "-e ../"]}]}))
    reqs = _pip_requirements_as_conda_installs_them(env, tmp_path)
    assert _local_paths(reqs) == [str(tmp_path / ".snakemake")]
    assert not (
        tmp_path / ".snakemake" / "pyproject.toml"
    ).exists()  # pip: "does not appear to be a Python project"


@pytest.mark.parametrize("kind", sorted(ENVS))
def test_env_creation_under_sdm_conda_installs_only_the_lock(kind, tmp_path):
    """From a fresh clone, `--sdm conda` installs every env's pip part from where conda runs pip: named pins
    only (no path that the copy's folder would change), exactly the lock's."""
    reqs = _pip_requirements_as_conda_installs_them(ENVS[kind], tmp_path)
    assert _local_paths(reqs) == []
    assert all(r.req is not None and not r.editable for r in reqs)
    _, pins = _update_locks().read_lock(LOCKS[kind].read_text())
    assert {canonicalize_name(r.req.name): str(r.req.specifier) for r in reqs} == {
        canonicalize_name(p.name): f"=={p.version}" for p in pins.values()
    }


@pytest.mark.workflow
def test_jobs_import_the_sieve_of_the_checkout_being_run(tmp_path):
    """Another sieve ahead on the job's path (an older clone installed in the env, or on PYTHONPATH as here,
    which comes before site-packages) must not be what a job runs: the job imports this checkout's."""
    decoy = tmp_path / "elsewhere" / "sieve"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text('raise ImportError("the job imported another copy of sieve")\n')
    images = make_image_folder(tmp_path / "images", n_per_class=2, corrupt=0)
    (tmp_path / "words.txt").write_text("cat\ndog\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "config.yaml").write_text(yaml.safe_dump(tiny_config(images, tmp_path / "words.txt")))
    env = snakemake_env()
    env["PYTHONPATH"] = os.pathsep.join([str(decoy.parent), str(REPO / "tests")])
    target = "results/concepts/words/concepts.json"
    proc = subprocess.run(
        snakemake_cmd("-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "1", target),
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=300,
    )
    log = work / "logs" / "concepts" / "words" / "prepare_concepts.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text() if log.exists() else "")
    assert [c["text"] for c in json.loads((work / target).read_text())["concepts"]] == ["cat", "dog"]
