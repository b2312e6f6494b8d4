"""Jobs that only read and write files never import torch (seconds per job, a large share of a small run's
job time, issue 14): their scripts' sieve imports succeed in a process where torch cannot be imported."""

from __future__ import annotations

import json
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
    "neuron_grids",
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


GRIDS_RUN = """
import sys, json
sys.modules['torch'] = None  # any import of torch (or of a module that needs it) fails
from pathlib import Path
import h5py, numpy as np
from PIL import Image
from sieve.backends.imagesets import open_image_set
from sieve.report.grids import run_grids
tmp = Path(sys.argv[1])
(tmp / "clusters").mkdir()
crops = [{"rank": r, "probe_index": 2 * r, "box": [8, 8, 40, 40], "activation": 1.0 - r / 10} for r in range(5)]
doc = {"neuron": 3, "k": 2, "crops": crops, "dropped": [],
       "clusters": [{"cluster": 0, "members": [0, 1, 2], "size": 3}, {"cluster": 1, "members": [3, 4], "size": 2}]}
(tmp / "clusters" / "3.json").write_text(json.dumps(doc))
with h5py.File(tmp / "crops.h5", "w") as f:
    f.attrs["preprocess"] = json.dumps({"input_size": 64, "resize": 64})
with h5py.File(tmp / "activations.h5", "w") as f:
    f["topk/maps"] = np.random.default_rng(0).random((4, 5, 4, 4)).astype(np.float16)
probe = open_image_set("pics", {"kind": "synthetic", "n_images": 12, "seed": 0})
n = run_grids(str(tmp / "clusters"), str(tmp / "crops.h5"), probe, str(tmp / "grids"), tile=32, num_workers=2,
              activations_h5=str(tmp / "activations.h5"))
with Image.open(tmp / "grids" / "3.jpg") as im:
    print(json.dumps({"n": n, "format": im.format, "size": im.size, "torch": sys.modules.get("torch")}))
"""


def test_neuron_grids_runs_without_torch(tmp_path) -> None:
    """The grids job end to end (thumbnails of the synthetic probe set by worker threads, the model's view,
    drawing, JPEG) in a process where torch cannot be imported."""
    proc = subprocess.run(
        [sys.executable, "-c", GRIDS_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        env=snakemake_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == 1 and out["format"] == "JPEG" and out["torch"] is None
    assert out["size"][1] > 2 * 32 * 2  # two row blocks of an image and its map


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
