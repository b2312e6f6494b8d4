"""The trained world as a workflow stage (rules/train.smk): what the parse reads of its spec, what retrains a
model and what does not (dry runs after a real run of a tiny spec), the accuracy floor stopping the run, a model
entry checked against the trained architecture, and (marker `long`, skipped unless `-m long`) the whole example
examples/trained_world.yaml."""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO, jobs_run, run_snakemake
from sieve.config_checks import ConfigError, check_config
from sieve.evaluate.neuron_ablation import rank_verified
from sieve.trained import load_trained_world, model_spec
from sieve.trained import params as trained_params

TINY_WORLD = {"image_size": 32, "sizes": [7, 9], "generated_size": 11, "neurons": [{"kind": "dead"}]}
TINY_SPEC = {
    "world": "world.yaml",
    "pictures": {"main_sizes": [11, 13], "clutter": 1, "clutter_sizes": [5, 7], "train": 46, "test": 23},
    "training": {"min_accuracy": 0.0},
    "models": {
        "resnet": {
            "arch": "ResNet",
            "kwargs": {"block": "BasicBlock", "layers": [1, 1, 1, 1]},
            "steps": 2,
            "batch_size": 8,
            "lr": 0.001,
        },
        "vit": {
            "arch": "VisionTransformer",
            "kwargs": {"patch_size": 8, "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32},
            "steps": 2,
            "batch_size": 8,
            "lr": 0.001,
        },
    },
}
TRAINED = {"resnet": "results/trained_world/resnet/model.pt", "vit": "results/trained_world/vit/model.pt"}


def write_spec(folder: Path, spec: dict | None = None, world: dict | None = None, comment: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "world.yaml").write_text(yaml.safe_dump(world or TINY_WORLD), encoding="utf-8")
    path = folder / "trained.yaml"
    path.write_text(comment + yaml.safe_dump(spec or TINY_SPEC), encoding="utf-8")
    return path


def entry(spec_path: Path | str, name: str, **extra) -> dict:
    """The models: entry that loads trained model ``name`` (from the spec itself: what the user writes)."""
    e = {"source": "torchvision", **trained_params.expected_model_entry(str(spec_path), name)}
    return {**e, "weights": TRAINED[name], **extra}


def tiny_config(spec_path: Path) -> dict:
    return {
        "trained_world": {"spec": str(spec_path)},
        "models": {"r": entry(spec_path, "resnet", layer="layer4")},
        "probes": {"heldout": {"kind": "imagefolder", "path": "results/trained_world/pictures"}},
        "concept_sets": {"world": {"synthetic": "default"}},
        "embedder": {"source": "synthetic"},
        "generator": {"source": "synthetic", "images_per_concept": 2, "shards": 1},
        "device": "cpu",
        "num_workers": 0,
    }


# ------------------------------------------------------------------------------------- the parse (no torch)
def test_params_read_the_spec_as_the_job_does(tmp_path) -> None:
    """The light reader (the Snakefile's) and the job's validated spec agree on names and architecture."""
    spec = write_spec(tmp_path)
    tw = load_trained_world(str(spec))
    assert trained_params.model_names(str(spec)) == sorted(tw.models) == ["resnet", "vit"]
    for name in tw.models:
        want = model_spec(tw, name)
        got = trained_params.expected_model_entry(str(spec), name)
        assert got == {k: want[k] for k in ("arch", "kwargs", "num_classes", "input_size")}
    assert trained_params.expected_model_entry("default", "vit")["num_classes"] == 23


def test_params_change_only_with_what_changes_a_model(tmp_path) -> None:
    spec = write_spec(tmp_path / "a")
    base = {n: trained_params.training_params(str(spec), n) for n in ("resnet", "vit")}
    # a comment, or the planted model's neurons (they draw nothing): no model changes
    same = write_spec(tmp_path / "b", comment="# a note\n", world={**TINY_WORLD, "neurons": []})
    assert {n: trained_params.training_params(str(same), n) for n in base} == base
    # the ViT's steps: the ViT only
    vit = yaml.safe_load(yaml.safe_dump(TINY_SPEC))
    vit["models"]["vit"]["steps"] = 3
    other = write_spec(tmp_path / "c", spec=vit)
    assert trained_params.training_params(str(other), "resnet") == base["resnet"]
    assert trained_params.training_params(str(other), "vit") != base["vit"]
    # a colour of the world: every model, and the pictures
    world = write_spec(
        tmp_path / "d", world={**TINY_WORLD, "colours": {"red": [0.9, 0.1, 0.1], "blue": [0.1, 0.2, 0.9]}}
    )
    assert all(trained_params.training_params(str(world), n) != base[n] for n in base)
    assert trained_params.picture_params(str(world)) != trained_params.picture_params(str(spec))


def test_config_check_accepts_a_trained_checkpoint_and_names_a_wrong_entry(tmp_path) -> None:
    spec = write_spec(tmp_path)
    cfg = tiny_config(spec)
    check_config(cfg)  # the checkpoint does not exist yet: the workflow trains it; arch ResNet is a class
    cfg["models"]["r"]["kwargs"] = {"block": "BasicBlock", "layers": [2, 2, 2, 2]}
    with pytest.raises(ConfigError, match=r"models\.r: loads trained-world model 'resnet'.*kwargs"):
        check_config(cfg)
    cfg = tiny_config(spec)
    cfg["models"]["r"]["weights"] = "results/other/model.pt"
    with pytest.raises(ConfigError, match=r"models\.r\.weights: checkpoint file not found"):
        check_config(cfg)


# ------------------------------------------------------------------------------- the workflow (tiny spec)
def dry_jobs(work: Path, cfg: dict, *targets: str) -> dict[str, int]:
    proc = run_snakemake(work, cfg, targets=targets, extra=("-n",))
    return dict(jobs_run(proc))


@pytest.mark.workflow
def test_training_is_cached_on_the_spec_content_and_the_probe_waits_for_it(tmp_path) -> None:
    work = tmp_path / "run"
    spec = write_spec(tmp_path / "spec")
    cfg = tiny_config(spec)
    probe = "results/r/heldout/activations.h5"
    planned = dry_jobs(work, cfg, probe)
    assert planned["train_world_model"] == 1 and planned["trained_pictures"] == 1, planned
    assert planned["probe_activations"] == 1
    targets = (*TRAINED.values(), "results/trained_world/class_names.txt")
    proc = run_snakemake(work, cfg, targets=targets)
    assert jobs_run(proc)["train_world_model"] == 2
    record = json.loads((work / "results/trained_world/vit/training.json").read_text())
    assert 0 <= record["accuracy"] <= 1 and record["model_spec"]["weights"] == TRAINED["vit"]
    assert len(record["recall"]) == record["model_spec"]["num_classes"] == 23
    log = (work / "logs/trained_world/vit/train.log").read_text()
    assert re.search(r"train vit: 100%.*2/2", log), log[-2000:]  # the progress bar, in the log
    names = (work / "results/trained_world/class_names.txt").read_text().splitlines()
    assert names[0] == "red circle" and names[-3].startswith("stripes, ")

    assert dry_jobs(work, cfg, *targets) == {}
    # nothing else retrains: a comment in the spec, the planted neurons, another key of the config
    write_spec(tmp_path / "spec", comment="# edited\n", world={**TINY_WORLD, "neurons": []})
    assert dry_jobs(work, {**cfg, "select": {"tau": 4}}, *targets) == {}
    # the ViT's settings retrain the ViT only
    vit = yaml.safe_load(yaml.safe_dump(TINY_SPEC))
    vit["models"]["vit"]["lr"] = 0.002
    write_spec(tmp_path / "spec", spec=vit)
    planned = dry_jobs(work, cfg, *targets)
    assert planned == {"train_world_model": 1}, planned
    # the world retrains both, and redraws the class names (22 classes: the entry follows the spec)
    write_spec(tmp_path / "spec", spec=vit, world={**TINY_WORLD, "textures": ["stripes", "dots"]})
    planned = dry_jobs(work, tiny_config(spec), *targets)
    assert planned == {"train_world_model": 2, "trained_class_names": 1}, planned


@pytest.mark.workflow
def test_a_model_under_the_floor_stops_the_run_with_its_accuracy(tmp_path) -> None:
    spec = yaml.safe_load(yaml.safe_dump(TINY_SPEC))
    spec["models"]["resnet"]["min_accuracy"] = 1.0
    path = write_spec(tmp_path / "spec", spec=spec)
    work = tmp_path / "run"
    proc = run_snakemake(work, tiny_config(path), targets=(TRAINED["resnet"],), check=False)
    assert proc.returncode != 0
    log = (work / "logs/trained_world/resnet/train.log").read_text()
    assert re.search(r"trained model 'resnet': held-out accuracy 0\.\d{3} is under the floor 1\.000", log), (
        log
    )
    assert not (work / TRAINED["resnet"]).exists()


# ------------------------------------------------------------------------------------- the whole example
def report_data(html: Path) -> dict:
    text = html.read_text(encoding="utf-8")
    blob = re.search(r'<script id="sieve-data" type="application/json">(.*?)</script>', text, re.S)
    assert blob, "no data blob in the report"
    return json.loads(blob.group(1))


@pytest.mark.long
@pytest.mark.workflow
@pytest.mark.timeout(3600)
def test_trained_world_example_runs_the_whole_protocol(tmp_path) -> None:
    """`snakemake --configfile examples/trained_world.yaml --replace-workflow-config --cores 2` on a fresh
    working directory: the report shows the five tables, and what the trained world guarantees holds."""
    work = tmp_path / "run"
    work.mkdir()
    shutil.copy(REPO / "examples/trained_world.yaml", work / "config.yaml")
    load0, cpu0, t0 = os.getloadavg(), _children_cpu(), time.perf_counter()
    run_snakemake(work, None, extra=("--replace-workflow-config",), timeout=3500)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    # what bench/trained_world.py --workdir records (the machine may be shared: the load average says how much)
    print(
        f"trained world example in {work}: {seconds:.1f} s wall, {cpu:.1f} CPU-s, load {load0} -> {os.getloadavg()}"
    )

    check_trained_world_run(work)


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (the Snakemake run and its jobs)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def check_trained_world_run(work: Path) -> None:
    """What a finished run of examples/trained_world.yaml in ``work`` must show (also usable on a run made by
    hand: ``python -c "import test_trained_world as t; t.check_trained_world_run(Path('...'))"``)."""
    data = report_data(work / "results/report/index.html")
    tables = {t["title"].split(":")[0]: t for t in data["paper"]}
    assert {"The trained world's models", "Tables 1 and 2", "Table 4", "Table 5", "Fig. 6"} <= set(tables)
    models = ["resnet_final", "resnet_penultimate", "vit_final", "vit_penultimate"]

    # the models learned, above the spec's floor
    for row in tables["The trained world's models"]["rows"]:
        assert row[2] >= row[3] > 1 / 23, row

    # Tables 1-2: both final layers, both methods, beside their penultimate layer's mean AR
    t12 = tables["Tables 1 and 2"]
    col = {c: i for i, c in enumerate(t12["columns"])}
    got = {(r[col["final layer"]], r[col["method"]]) for r in t12["rows"]}
    assert got == {(m, meth) for m in ("resnet_final", "vit_final") for meth in ("sieve", "clip_dissect")}
    for r in t12["rows"]:
        assert r[col["penultimate layer"]] == r[col["final layer"]].replace("final", "penultimate")
        assert 0 <= r[col["mean AR kept"]] <= 1 and r[col["mean AR initial"]] <= r[col["mean AR kept"]]
    assert "text side" in t12["note"]  # the world has no sentence model, and the report says so

    # the trained world's guarantee: most (3 in 4) class neurons of classes the model learned are selected (by the
    # default select.negative, exp on these signed logits), and they are labelled with their own class
    for m, trained in (("resnet_final", "resnet"), ("vit_final", "vit")):
        sel = json.loads((work / f"results/{m}/heldout/select/summary.json").read_text())
        learned = json.loads((work / f"results/trained_world/{trained}/training.json").read_text())["learned"]
        chosen = {int(n) for n, v in sel["neurons"].items() if v["selected"]}
        assert sel["n_neurons"] == 23 and len(chosen & set(learned)) >= 0.75 * len(learned), (
            m,
            sorted(chosen),
        )
        fl = json.loads((work / f"results/{m}/heldout/world/final_layer_metrics.json").read_text())
        row = fl["sieve / verified / www"]
        assert row["n_neurons"] >= 0.5 * len(learned), (m, row)
        assert row["top1_accuracy"] >= 0.5, (m, row)

    # Table 4: five rows per model, the row with none of the three stages among them
    t4 = tables["Table 4"]
    for m in models:
        stages = [r[1] for r in t4["rows"] if r[0] == m]
        assert stages == ["all three (sieve)", "no Select", "no Cluster", "no Verify", "none of the three"]
    assert all(r[-1] is not None for r in t4["rows"] if r[0].endswith("final"))

    # Table 5: tau 4..12 per model, the selected share never grows with tau
    t5 = tables["Table 5"]
    for m in models:
        rows = [r for r in t5["rows"] if r[0] == m]
        assert [r[1] for r in rows] == [4, 6, 8, 10, 12]
        shares = [r[3] for r in rows]
        assert shares == sorted(shares, reverse=True), (m, shares)

    # Fig. 6: only the entries the config names (the penultimate ones), each its run's best verified neuron
    cfg = yaml.safe_load((work / "config.yaml").read_text(encoding="utf-8"))["evaluate"]["ablate_neurons"]
    assert (
        {
            t["title"].split(": ", 1)[1].split(" (")[0]
            for t in data["paper"]
            if t["title"].startswith("Fig. 6")
        }
        == set(cfg)
        == {"resnet_penultimate", "vit_penultimate"}
    )
    assert not list((work / "results").glob("*_final/heldout/ablation"))
    for m, choice in cfg.items():  # {best_verified: 1}: the run's own best verified neuron, zeroed
        assert choice == {"best_verified": 1}, (m, choice)
        verified = work / f"results/{m}/heldout/world/neuron_concepts.csv"
        with verified.open(encoding="utf-8") as fh:
            ranked = rank_verified([r for r in csv.DictReader(fh) if r["status"] == "verified"])
        zeroed = sorted(int(p.stem) for p in (work / f"results/{m}/heldout/ablation").glob("*.json"))
        assert zeroed == [int(ranked[0]["neuron"])], (m, zeroed, ranked[:3])


# ------------------------------------------------------------------------------------ the paper's tables
def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def test_paper_tables_join_final_layer_columns_and_penultimate_ar(tmp_path) -> None:
    from sieve.report.paper import paper_tables

    res = tmp_path / "results"
    spec = {"source": "torchvision", "arch": "ResNet", "weights": "w.pt"}
    models = {
        "net_pen": {**spec, "layer": "layer4"},
        "net_fc": {**spec, "layer": "fc", "ground_truth": "c.txt"},
    }
    runs = [
        {
            "model": m,
            "probe": "p",
            "concept_set": "c",
            "_summaries": {"sieve": {"mean_ar_initial": ar, "mean_ar_kept": ar + 0.2}},
        }
        for m, ar in (("net_fc", 0.5), ("net_pen", 0.3))
    ]
    metric = {
        "n_neurons": 3,
        "clip_cos": 0.9,
        "mpnet_cos": 0.8,
        "top1_accuracy": 2 / 3,
        "mpnet_model": "x text side",
    }
    fl = {
        f"sieve / verified / {p}": {"method": "sieve", "labels": "verified", "protocol": p, **metric}
        for p in ("clip_dissect", "www")
    }
    _write(res / "net_fc/p/c/final_layer_metrics.json", fl)
    _write(
        res / "net_fc/p/c/final_layer_variants.json",
        {
            "tau=4 / clip_dissect": {**metric, "top1_accuracy": 1.0},
            "none / clip_dissect": {**metric, "top1_accuracy": 0.0},
        },
    )
    _write(
        res / "net_fc/p/c/sweeps/tau.json", {"tau=4": {"tau": 4.0, "n_selected": 3, "selected_share": 1.0}}
    )
    _write(
        res / "stage_ablations/net_fc/p/c/ablations.json",
        {"variants": [{"variant": "none", "label": "none of the three", "mean_ar": 0.1}]},
    )
    _write(
        res / "net_pen/p/ablation/7.json",
        {
            "neuron": 7,
            "layer": "layer4",
            "accuracy": 0.8,
            "ablated_accuracy": 0.7,
            "classes": [
                {
                    "class": 2,
                    "name": "dots",
                    "n_images": 10,
                    "accuracy": 0.9,
                    "ablated_accuracy": 0.4,
                    "drop": 0.5,
                }
            ],
        },
    )
    tables = {t["title"].split(":")[0]: t for t in paper_tables(runs, models, res, lambda p: p.name)}
    assert set(tables) == {"Tables 1 and 2", "Table 4", "Table 5", "Fig. 6"}
    t12 = tables["Tables 1 and 2"]
    assert t12["rows"] == [
        ["net_fc", "sieve", "verified", 3, 0.9, 0.8, 0.6667, 0.9, 0.8, 0.6667, "net_pen", 0.3, 0.5]
    ]
    assert "text cos: x text side" in t12["note"]
    assert tables["Table 4"]["rows"] == [
        ["net_fc", "none of the three", None, None, None, 0.1, 0.9, 0.8, 0.0]
    ]
    assert tables["Table 5"]["rows"] == [["net_fc", 4.0, 3, 1.0, None, None, 0.9, 0.8, 1.0]]
    assert tables["Fig. 6"]["rows"] == [[2, "dots", 10, 0.9, 0.4, 0.5]]


def test_readme_quotes_the_recorded_run() -> None:
    """The README's figures of the trained-world example are bench/results/trained_world.json's."""
    rec = json.loads((REPO / "bench/results/trained_world.json").read_text(encoding="utf-8"))
    text = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    m = re.search(
        r"(\d+) s of wall time .*?; training took (\d+) s \(ResNet, held-out accuracy ([\d.]+)\) and "
        r"(\d+) s \(ViT, ([\d.]+)\)",
        text,
    )
    assert m, "README: the trained world's measured sentence changed; update this test"
    wall, r_cpu, r_acc, v_cpu, v_acc = m.groups()
    assert int(wall) == round(rec["wall_seconds"])
    train = rec["training"]
    assert int(r_cpu) == round(train["resnet"]["cpu_seconds"]) and float(r_acc) == round(
        train["resnet"]["accuracy"], 3
    )
    assert int(v_cpu) == round(train["vit"]["cpu_seconds"]) and float(v_acc) == round(
        train["vit"]["accuracy"], 3
    )


def test_fig6_figures_in_the_docs_are_the_recorded_run() -> None:
    """docs/trained-world.md's Fig. 6 sentence (neuron, label, AR, top-1 before and after, largest class drop)
    is bench/results/trained_world.json's: the one neuron the recorded run zeroed per entry, its best verified
    (the example's `best_verified: 1`)."""
    rec = json.loads((REPO / "bench/results/trained_world.json").read_text(encoding="utf-8"))[
        "neuron_ablation"
    ]
    text = " ".join((REPO / "docs/trained-world.md").read_text(encoding="utf-8").split())
    cfg = yaml.safe_load((REPO / "examples/trained_world.yaml").read_text(encoding="utf-8"))
    for model, layer in (("resnet_penultimate", "layer4"), ("vit_penultimate", "encoder.ln")):
        assert cfg["evaluate"]["ablate_neurons"][model] == {"best_verified": 1}
        ((key, r),) = [(k, v) for k, v in rec.items() if k.startswith(f"{model}/")]  # the one it zeroed
        neuron = int(key.split("/")[1])
        assert r["rank_by_best_ar"] == 1, (model, r)
        quoted = (
            f'`{layer}` neuron {neuron}, "{r["best_concept"]}" (AR {r["best_ar"]}, of {r["n_verified"]}'
            f"{' verified neurons' if model.startswith('resnet') else ''}), top-1 {r['accuracy']:.3f} -> "
            f"{r['ablated_accuracy']:.3f}"
        )
        assert quoted in text, quoted
        drop = r["largest_drop"]
        assert f"largest class drop {drop['drop']:.2f} ({drop['name']})" in text, drop
