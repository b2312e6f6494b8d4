"""Partial reruns: which jobs a changed concept set or a changed select.tau reruns (real snakemake runs).

The embedder here is the python source's projection embedder (tests/tinyclip.py): which jobs rerun does not
depend on the embedder, and it spares each embedding job open_clip's import time; the open_clip path runs
end to end in test_hypothesize.py."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from helpers import REPO, jobs_run, make_image_folder, run_snakemake, tiny_config


@pytest.mark.workflow
def test_partial_reruns(tmp_path):
    images = make_image_folder(tmp_path / "images", n_per_class=6, corrupt=0)
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\ngreen\n")
    cfg = tiny_config(images, words, embedder={"source": "python", "factory": "tinyclip:projection_embedder"})
    targets = ("results/tiny/pics/words/hypotheses",)
    first = jobs_run(run_snakemake(tmp_path, cfg, targets=targets))
    assert first["probe_activations"] == 1 and first["hypothesize"] == 1

    # nothing changed: nothing to do
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets, extra=("-n",))) == Counter()
    # speed settings (batch sizes, DataLoader workers) change no result: nothing to do either
    fast = {
        **cfg,
        "num_workers": 1,
        "probe": {"threads": 3},
        "models": {"tiny": {**cfg["models"]["tiny"], "batch_size": 3}},
        "embedder": {**cfg["embedder"], "batch_size": 5},
    }
    assert jobs_run(run_snakemake(tmp_path, fast, targets=targets, extra=("-n",))) == Counter()
    # the decode can move activations slightly: changing it reruns the probe (and what reads it)
    decoded = jobs_run(
        run_snakemake(tmp_path, {**cfg, "probe": {"decode": "device"}}, targets, extra=("-n",))
    )
    assert decoded["probe_activations"] == 1

    # a concept set's contents change and a new set is added: only concept jobs and hypotheses run
    crops_mtime = (tmp_path / "results/tiny/pics/crops/crops.h5").stat().st_mtime_ns
    words.write_text("red\nblue\npurple\n")
    more = tmp_path / "more.txt"
    more.write_text("stripes\ndots\n")
    cfg["concept_sets"]["more"] = {"path": str(more)}
    second = jobs_run(run_snakemake(tmp_path, cfg, targets=targets + ("results/tiny/pics/more/hypotheses",)))
    assert second == Counter({"prepare_concepts": 2, "embed_concepts": 2, "hypothesize": 2})
    assert (tmp_path / "results/tiny/pics/crops/crops.h5").stat().st_mtime_ns == crops_mtime
    hyp = tmp_path / "results/tiny/pics/words/hypotheses"
    named = {
        c["text"]
        for p in hyp.glob("*.json")
        for cl in json.loads(p.read_text())["clusters"]
        for c in cl["concepts"]
    }
    assert "green" not in named and named <= {"red", "blue", "purple"}

    # select.tau changes: selection and everything after it rerun, never the probe or the concept sets
    cfg["select"]["tau"] = 1.2
    third = jobs_run(run_snakemake(tmp_path, cfg, targets=targets + ("results/tiny/pics/more/hypotheses",)))
    assert third == Counter({"select_neurons": 1, "embed_crops": 1, "cluster_crops": 1, "hypothesize": 2})
    assert third["probe_activations"] == 0


@pytest.mark.workflow
def test_editing_a_world_spec_reruns_what_reads_it(tmp_path):
    """The synthetic world is a file the user edits: its content, not only its path, keys the probe and the
    truth (a path alone is a param, unchanged by an edit)."""
    spec = tmp_path / "world.yaml"
    spec.write_text((REPO / "workflow/sieve/synthetic/default.yaml").read_text())
    cfg = {
        "models": {"w": {"source": "synthetic", "spec": str(spec)}},
        "probes": {"scenes": {"kind": "synthetic", "spec": str(spec), "n_images": 40}},
        "concept_sets": {"words": {"synthetic": str(spec)}},
        "embedder": {"source": "synthetic", "spec": str(spec)},
        "generator": {"source": "synthetic", "spec": str(spec), "shards": 1},
        "device": "cpu",
        "num_workers": 0,
    }
    targets = ("results/w/scenes/select/summary.json",)
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets))["probe_activations"] == 1
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets, extra=("-n",))) == Counter()

    time.sleep(0.05)
    spec.write_text(spec.read_text().replace("noise: 0.03", "noise: 0.05"))
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets, extra=("-n",))) == Counter(
        {"probe_activations": 1, "select_neurons": 1}
    )

    # the truth and the stage ablation table read the spec too (their dry-run inputs name it)
    dry = run_snakemake(tmp_path, {**cfg, "evaluate": {"stage_ablations": True}}, extra=("-n",))
    for rule in ("truth", "stage_ablation_table", "prepare_concepts"):
        block = re.search(rf"^\s*(?:local)?rule {rule}:\n\s*input: ([^\n]*)", dry.stdout, re.M)
        assert block and str(spec) in block.group(1), rule


@pytest.mark.workflow
def test_adding_ground_truth_to_a_model_does_not_rerun_the_probe(tmp_path):
    """`ground_truth` only feeds the final-layer metrics: the probe (hours on ImageNet) and Select stay."""
    images = make_image_folder(tmp_path / "images", n_per_class=4, corrupt=0)
    cfg = tiny_config(images)
    targets = ("results/tiny/pics/select/summary.json",)
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets))["probe_activations"] == 1
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\n")
    cfg["models"]["tiny"]["ground_truth"] = str(classes)
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets, extra=("-n",))) == Counter()
    # a key that does change activations still reruns it
    cfg["models"]["tiny"]["dtype"] = "bfloat16"
    assert jobs_run(run_snakemake(tmp_path, cfg, targets=targets, extra=("-n",)))["probe_activations"] == 1
