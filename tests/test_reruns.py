"""Partial reruns: which jobs a changed concept set or a changed select.tau reruns (real snakemake runs).

The embedder here is the python source's projection embedder (tests/tinyclip.py): which jobs rerun does not
depend on the embedder, and it spares each embedding job open_clip's import time; the open_clip path runs
end to end in test_hypothesize.py."""

from __future__ import annotations

import json
from collections import Counter

from conftest import jobs_run, make_image_folder, run_snakemake, tiny_config


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
    named = {c["text"] for p in hyp.glob("*.json") for cl in json.loads(p.read_text())["clusters"]
             for c in cl["concepts"]}
    assert "green" not in named and named <= {"red", "blue", "purple"}

    # select.tau changes: selection and everything after it rerun, never the probe or the concept sets
    cfg["select"]["tau"] = 1.2
    third = jobs_run(run_snakemake(tmp_path, cfg, targets=targets + ("results/tiny/pics/more/hypotheses",)))
    assert third == Counter({"select_neurons": 1, "embed_crops": 1, "cluster_crops": 1, "hypothesize": 2})
    assert third["probe_activations"] == 0
