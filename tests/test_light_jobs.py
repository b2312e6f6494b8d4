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


# What a job runs, in a process where the heavy module it no longer needs cannot be imported (issue 14: each
# took seconds of a small job's import time). Each snippet checks a real result, so that a silent fallback fails.
RUNS_WITHOUT = {
    "cluster_crops: Ward clusters and silhouettes without scikit-learn": (
        ("sklearn", "torch"),
        "import numpy as np\n"
        "from sieve.hypothesize import cluster_embeddings\n"
        "x = np.repeat(np.eye(2, 8), 5, axis=0) + np.random.default_rng(0).normal(0, 0.01, (10, 8))\n"
        "res = cluster_embeddings(x, k_max=4, silhouette_floor=0.1, min_cluster_size=2)\n"
        "assert res['k'] == 2 and res['labels'].tolist() == [0] * 5 + [1] * 5, res\n",
    ),
    "probe, crops, CLIP-Dissect images: the model's view without torchvision": (
        ("torchvision",),
        "from PIL import Image\n"
        "from sieve.backends.models import Preprocess\n"
        "from sieve.evaluate.clip_dissect import _clip_transform\n"
        "img = Image.new('RGB', (40, 20), (255, 0, 0))\n"
        "x = Preprocess(input_size=8, resize=10).geometric(img)\n"
        "assert tuple(x.shape) == (3, 8, 8) and float(x[0].min()) == 1.0 and float(x[1].max()) == 0.0\n"
        "assert tuple(_clip_transform(6)(img).shape) == (3, 6, 6)\n",
    ),
    "ratio_histogram and the report's AR figure without pyplot": (
        ("matplotlib.pyplot",),
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from sieve.select import ratio_histogram\n"
        "from sieve.report.tables import ar_distribution_png\n"
        "d = Path(tempfile.mkdtemp())\n"
        "neurons = {str(i): {'ratio': r, 'dead': False} for i, r in enumerate([2.0, 30.0, float('inf')])}\n"
        "ratio_histogram({'neurons': neurons, 'tau': 10, 'n_selected': 2, 'n_neurons': 3}, str(d / 'h.png'))\n"
        "ar = {'values': [0.1, 0.9], 'mean_initial': 0.5, 'mean_kept': 0.9}\n"
        "ar_distribution_png([{'key': 'm', 'ar': {'sieve': ar}}], d / 'ar.png')\n"
        "assert all((d / f).read_bytes()[:8] == b'\\x89PNG\\r\\n\\x1a\\n' for f in ('h.png', 'ar.png'))\n",
    ),
}


@pytest.mark.parametrize("what", list(RUNS_WITHOUT))
def test_light_work_runs_without_heavy_imports(what: str) -> None:
    blocked, body = RUNS_WITHOUT[what]
    code = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in blocked) + body
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=snakemake_env(), timeout=120
    )
    assert proc.returncode == 0, f"{what}:\n{proc.stderr[-3000:]}"
