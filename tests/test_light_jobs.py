"""Jobs that only read and write files never import torch (seconds per job, a large share of a small run's
job time, issue 14): their scripts' sieve imports succeed in a process where torch cannot be imported."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from helpers import REPO, snakemake_env

SCRIPTS = REPO / "workflow" / "scripts"
# Scripts whose rules run no network (no `gpu` resource): selection, clustering, scoring, tables, the report.
LIGHT = [
    "ablation_table",
    "activation_rate",
    "build_report",
    "cluster_crops",
    "generation_requests",
    "hypothesize",
    "prepare_concepts",
    "ratio_histogram",
    "select_neurons",
    "sweep_table",
    "sweep_tau",
    "truth",
]


def sieve_imports(script: str) -> list[str]:
    text = (SCRIPTS / f"{script}.py").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"^\s*(?:from|import) (sieve[\w.]*)", text, re.M)))


@pytest.mark.parametrize("script", LIGHT)
def test_light_job_imports_no_torch(script: str) -> None:
    modules = sieve_imports(script)
    assert modules, f"{script}.py imports nothing from sieve"
    code = "import sys; sys.modules['torch'] = None\n" + "".join(f"import {m}\n" for m in modules)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=snakemake_env(), timeout=120
    )
    assert proc.returncode == 0, f"{script}.py needs torch through {modules}:\n{proc.stderr[-3000:]}"


def test_the_check_catches_a_torch_import() -> None:
    """The mechanism itself: a module that imports torch fails in that process."""
    code = "import sys; sys.modules['torch'] = None\nimport sieve.probe\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=snakemake_env(), timeout=120
    )
    assert proc.returncode != 0 and "torch" in proc.stderr


def test_every_script_puts_this_checkout_first() -> None:
    """Every job runs this checkout's sieve (issue 12): each script imports use_checkout before any sieve
    import, whatever copy its environment has installed."""
    missing = []
    for script in sorted(SCRIPTS.glob("*.py")):
        if script.name == "use_checkout.py":
            continue
        lines = script.read_text(encoding="utf-8").splitlines()
        first_sieve = next(
            (i for i, line in enumerate(lines) if re.match(r"\s*(from|import) sieve\b", line)), None
        )
        first_checkout = next(
            (i for i, line in enumerate(lines) if line.startswith("import use_checkout")), None
        )
        if first_checkout is None or (first_sieve is not None and first_checkout > first_sieve):
            missing.append(script.name)
    assert missing == []
