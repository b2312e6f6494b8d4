"""Verify: requests, sharded content-addressed generation, Activation Rate, filtering, neuron_concepts.csv."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sieve.backends.generators import load_generator
from sieve.backends.models import load_model
from sieve.io import read_json, write_json
from sieve.verify import VerifyError
from sieve.verify.activation_rate import activation_rate, filter_hypotheses, run_activation_rate
from sieve.verify.requests import collect_requests, prompt_for, run_requests, shard_of
from sieve.verify.shard import run_shard

TESTS = Path(__file__).resolve().parent
MODEL = {"source": "python", "factory": "tinymodels:hotspot_cnn", "batch_size": 8}
N_NEURONS = 8


def gen_spec(**kw) -> dict:
    spec = {
        "source": "python",
        "factory": "tinydiffusion:pattern_generator",
        "resolution": 16,
        "steps": 1,
        "guidance_scale": 0.0,
        "images_per_concept": 4,
        "prompt": "a photo of {}",
        "batch_size": 3,
        "dtype": "auto",
        "shards": 2,
        "seed": 0,
        "keep_images": "thumbnails",
        "thumbnail_size": 16,
    }
    spec.update(kw)
    return spec


def write_hyp(folder: Path, neuron: int, clusters: list[list[str]]) -> None:
    write_json(
        folder / f"{neuron}.json",
        {
            "neuron": neuron,
            "concept_set": folder.parent.name,
            "method": "sieve",
            "clusters": [
                {
                    "cluster": k,
                    "size": 3,
                    "members": [0, 1, 2],
                    "concepts": [
                        {"id": f"id-{t}", "text": t, "score": 0.3 - 0.01 * r, "rank": r}
                        for r, t in enumerate(texts)
                    ],
                }
                for k, texts in enumerate(clusters)
            ],
        },
    )


class Counting:
    """A load_generator_fn that records every (prompt, seed) it generates."""

    def __init__(self) -> None:
        self.generated: list[tuple[str, int]] = []
        self.loads = 0

    def __call__(self, spec, device, dtype):
        self.loads += 1
        g = load_generator(spec, device, dtype)
        orig = g.generate

        def generate(prompts, seeds):
            self.generated += list(zip(prompts, seeds, strict=True))
            return orig(prompts, seeds)

        g.generate = generate
        return g


def generate_all(
    req: dict,
    spec: dict,
    root: Path,
    models: dict | None = None,
    counter: Counting | None = None,
    load_model_fn=None,
) -> list[dict]:
    return [
        run_shard(
            req,
            s,
            spec,
            models or {"tiny": MODEL},
            str(root / "cache"),
            str(root / "shards" / f"{s}.json"),
            device="cpu",
            load_generator_fn=counter,
            load_model_fn=load_model_fn,
        )
        for s in range(spec["shards"])
    ]


def reference_pooled(prompts: list[str], seeds: list[int]) -> np.ndarray:
    """Independent path: generate, quantise to 8 bits, run the tiny model -> [len(prompts) * len(seeds), C]."""
    from tinydiffusion import PatternGenerator

    lm = load_model("tiny", MODEL, "cpu")
    g = PatternGenerator(16)
    out = []
    for p in prompts:
        x = g.generate([p] * len(seeds), seeds)
        x = torch.round(x * 255) / 255
        out.append(lm.activations(lm.preprocess.from_batch(x), maps=False)[0].numpy())
    return np.stack(out)  # [P, S, C]


def select_summary(thresholds: np.ndarray, selected: set[int], dead: set[int] = frozenset()) -> dict:
    return {
        "n_neurons": len(thresholds),
        "neurons": {
            str(n): {
                "threshold": float(t),
                "selected": n in selected and n not in dead,
                "dead": n in dead,
                "ratio": 0.0 if n in dead else 3.0,
                "p99": 1.0,
                "median": 0.1,
            }
            for n, t in enumerate(thresholds)
        },
    }


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------------------------------


def test_ar_and_filter_match_numpy_reference():
    rng = np.random.default_rng(1)
    acts = rng.normal(size=(50, 20))
    thr = rng.normal(size=20)
    acts[0, :] = thr  # equal to the threshold is not active
    for n in range(20):
        n_img, n_act, ar = activation_rate(acts[:, n], thr[n])
        assert (n_img, n_act) == (50, int((acts[:, n] > thr[n]).sum()))
        assert ar == pytest.approx(np.mean(acts[:, n] > thr[n]))
    ars = rng.uniform(size=30)
    kept, m0, m1 = filter_hypotheses(ars)
    assert m0 == pytest.approx(ars.mean())
    np.testing.assert_array_equal(kept, ars >= ars.mean())
    assert m1 == pytest.approx(ars[ars >= ars.mean()].mean())
    kept, m0b, m1b = filter_hypotheses(ars, enabled=False)
    assert kept.all() and m0b == pytest.approx(m0) and m1b == pytest.approx(ars.mean())
    kept, m0, m1 = filter_hypotheses(np.array([]))
    assert kept.size == 0 and np.isnan(m0) and np.isnan(m1)


def test_filter_keeps_hypotheses_equal_to_the_mean():
    # a float mean of 7 x 0.35 is 0.35000000000000003: none of them is below the mean, all are kept
    ars = np.full(7, 0.35)
    kept, m0, m1 = filter_hypotheses(ars)
    assert kept.all() and m0 == 0.35 and m1 == 0.35
    # the same tie among other values: 0.35 is exactly the mean of [0.35] * 7 + [0.1, 0.6]
    ars = np.array([0.35] * 7 + [0.1, 0.6])
    kept, m0, m1 = filter_hypotheses(ars)
    assert kept.tolist() == [True] * 7 + [False, True] and m0 == 0.35
    assert m1 == pytest.approx((0.35 * 7 + 0.6) / 8)


def test_requests_dedupe_and_stable_shards(tmp_path):
    a, b = tmp_path / "a" / "hypotheses", tmp_path / "b" / "hypotheses"
    write_hyp(a, 0, [["dog", "cat"]])
    write_hyp(a, 3, [["dog"], ["tree"]])
    write_hyp(b, 1, [["dog", "../../etc/passwd"]])
    req = collect_requests([a, b], "a photo of {}", 4)
    prompts = {c["prompt"]: c for c in req["concepts"]}
    assert set(prompts) == {
        "a photo of dog",
        "a photo of cat",
        "a photo of tree",
        "a photo of ../../etc/passwd",
    }
    assert prompts["a photo of dog"]["n_hypotheses"] == 3 and req["n_hypotheses"] == 6
    for p, c in prompts.items():
        assert c["shard"] == shard_of(p, 4)
        assert "/" not in c["key"] and c["key"].isalnum()
    # a concept's shard does not depend on the other concepts
    only = collect_requests([b], "a photo of {}", 4)
    assert {c["prompt"]: c["shard"] for c in only["concepts"]}["a photo of dog"] == prompts["a photo of dog"][
        "shard"
    ]
    assert prompt_for("{} and {}", "{x}") == "{x} and {x}"


def test_ar_end_to_end_against_reference_and_shared_concept_generated_once(tmp_path):
    cs1, cs2 = tmp_path / "m/p/cs1/hypotheses", tmp_path / "m/p/cs2/hypotheses"
    write_hyp(cs1, 0, [["dog", "cat"], ["tree"]])
    write_hyp(cs1, 2, [["dog", "sky"]])
    write_hyp(cs1, 5, [["car"]])
    write_hyp(cs2, 0, [["dog", "boat"]])  # "dog" also in a second concept set
    spec = gen_spec()
    req = run_requests(
        [str(cs1), str(cs2)], str(tmp_path / "requests.json"), spec["prompt"], spec["shards"], spec
    )
    counter = Counting()
    manifests = generate_all(req, spec, tmp_path, counter=counter)
    counts = Counter(counter.generated)
    assert set(counts.values()) == {1}  # every (prompt, seed) exactly once
    assert len(counts) == 6 * 4 and sum(m["n_generated"] for m in manifests) == 24
    assert sum(1 for p, _ in counts if p == "a photo of dog") == 4

    seeds = [0, 1, 2, 3]
    texts = ["dog", "cat", "tree", "sky", "car"]
    ref = reference_pooled([f"a photo of {t}" for t in texts], seeds)  # [5, 4, C]
    thresholds = np.median(ref.reshape(-1, N_NEURONS), axis=0)
    sel = tmp_path / "select.json"
    write_json(sel, select_summary(thresholds, selected={0, 2, 4, 5}, dead={7}))
    out = tmp_path / "m/p/cs1/verify"
    mpaths = [str(tmp_path / "shards" / f"{s}.json") for s in range(spec["shards"])]
    summary = run_activation_rate(
        str(cs1),
        str(sel),
        mpaths,
        "tiny",
        str(out / "ar.csv"),
        str(out / "summary.json"),
        str(tmp_path / "m/p/cs1/neuron_concepts.csv"),
        str(out / "generated.json"),
    )
    rows = read_csv(out / "ar.csv")
    expected = [(0, 0, "dog"), (0, 0, "cat"), (0, 1, "tree"), (2, 0, "dog"), (2, 0, "sky"), (5, 0, "car")]
    assert [(int(r["neuron"]), int(r["cluster"]), r["concept"]) for r in rows] == expected
    ref_ar = np.array([np.mean(ref[texts.index(t), :, n] > thresholds[n]) for n, _, t in expected])
    np.testing.assert_allclose([float(r["ar"]) for r in rows], ref_ar, atol=1e-6)
    assert [int(r["n_active"]) for r in rows] == [int(round(a * 4)) for a in ref_ar]
    kept_ref = ref_ar >= ref_ar.mean()
    assert [bool(int(r["kept"])) for r in rows] == list(kept_ref)
    assert summary["n_hypotheses"] == 6 and summary["n_kept"] == int(kept_ref.sum())
    assert summary["mean_ar_initial"] == pytest.approx(ref_ar.mean())
    assert summary["mean_ar_kept"] == pytest.approx(ref_ar[kept_ref].mean())
    assert summary["n_selected"] == 4
    assert read_json(out / "summary.json")["mean_ar_initial"] == pytest.approx(ref_ar.mean())

    table = read_csv(tmp_path / "m/p/cs1/neuron_concepts.csv")
    assert [int(r["neuron"]) for r in table] == list(range(N_NEURONS))  # the whole layer
    status = {int(r["neuron"]): r["status"] for r in table}
    assert status[7] == "dead" and status[1] == status[3] == status[6] == "not_selected"
    assert status[4] == "unverified"  # selected, no hypotheses
    for n in (0, 2, 5):
        mine = [(t, a) for (nn, _, t), a, k in zip(expected, ref_ar, kept_ref, strict=True) if nn == n and k]
        row = next(r for r in table if int(r["neuron"]) == n)
        assert status[n] == ("verified" if mine else "unverified")
        assert sorted(json.loads(row["concepts"])) == sorted(t for t, _ in mine)
        assert sorted(json.loads(row["ars"])) == pytest.approx(sorted(a for _, a in mine))
    assert summary["n_verified"] == sum(status[n] == "verified" for n in range(N_NEURONS))

    generated = read_json(out / "generated.json")
    assert set(generated) == {f"id-{t}" for t in texts}
    for g in generated.values():
        assert len(g["thumbs"]) == 4 and all(Image.open(p).size == (16, 16) for p in g["thumbs"])
        assert g["text"] not in "".join(g["thumbs"])  # concept text never in a path

    # the ablation keeps every hypothesis and still reports AR
    s2 = run_activation_rate(
        str(cs1),
        str(sel),
        mpaths,
        "tiny",
        str(out / "ar2.csv"),
        str(out / "s2.json"),
        str(out / "nc2.csv"),
        enabled=False,
    )
    assert s2["n_kept"] == 6 and s2["mean_ar_initial"] == pytest.approx(ref_ar.mean())
    assert all(r["kept"] == "1" for r in read_csv(out / "ar2.csv"))


def test_rerun_generates_only_new_concepts_and_seeds(tmp_path):
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog", "cat"]])
    write_hyp(hyp, 1, [["tree"]])
    spec = gen_spec()
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], spec["shards"])
    first = generate_all(req, spec, tmp_path)
    assert sum(m["n_generated"] for m in first) == 12
    acts = sorted((tmp_path / "cache").rglob("*.npz"))
    mtimes = {p: p.stat().st_mtime_ns for p in acts}

    write_hyp(hyp, 1, [["tree", "boat"], ["river"]])  # two new concepts
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], spec["shards"])
    counter = Counting()
    second = generate_all(req, spec, tmp_path, counter=counter)
    assert sum(m["n_generated"] for m in second) == 8
    assert {p for p, _ in counter.generated} == {"a photo of boat", "a photo of river"}
    assert sum(m["n_cached"] for m in second) == 12
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())  # old results untouched

    # nothing new: no generator and no model is even loaded
    counter = Counting()
    loads = []
    third = generate_all(req, spec, tmp_path, counter=counter, load_model_fn=lambda *a: loads.append(a))
    assert sum(m["n_generated"] for m in third) == 0 and counter.loads == 0 and not loads

    # more images per concept: only the new seeds
    more = gen_spec(images_per_concept=6)
    counter = Counting()
    fourth = generate_all(req, more, tmp_path, counter=counter)
    assert sum(m["n_generated"] for m in fourth) == 5 * 2
    assert {s for _, s in counter.generated} == {4, 5}


def test_add_model_later_uses_full_images_without_generating(tmp_path):
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog", "cat"]])
    spec = gen_spec(keep_images="full", shards=1)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 1)
    generate_all(req, spec, tmp_path)
    other = {**MODEL, "kwargs": {"seed": 1}}
    counter = Counting()
    m = generate_all(req, spec, tmp_path, models={"tiny": MODEL, "other": other}, counter=counter)[0]
    assert m["n_generated"] == 0 and m["n_measured_from_images"] == 8 and counter.loads == 0
    # same activations as measuring the generated images on the fly, in a fresh cache
    fresh = generate_all(req, spec, tmp_path / "fresh", models={"tiny": MODEL, "other": other})[0]
    for c_old, c_new in zip(m["concepts"], fresh["concepts"], strict=True):
        a, b = np.load(c_old["acts"]["other"]), np.load(c_new["acts"]["other"])
        np.testing.assert_array_equal(a["seeds"], b["seeds"])
        np.testing.assert_allclose(a["pooled"], b["pooled"], rtol=1e-5, atol=1e-6)


KILL_SCRIPT = """
import json, sys
from sieve.io import read_json
from sieve.verify.shard import run_shard
spec = read_json(sys.argv[1])
run_shard(read_json(sys.argv[2]), 0, spec, {"tiny": json.loads(sys.argv[5])}, sys.argv[3], sys.argv[4], device="cpu")
"""


def test_killed_shard_resumes_without_redoing_finished_concepts(tmp_path):
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog", "cat"], ["tree", "sky"]])
    flag = tmp_path / "kill.flag"
    flag.write_text("1")
    spec = gen_spec(
        factory="tinydiffusion:killing_generator",
        kwargs={"flag": str(flag), "kill_at": 3},
        shards=1,
        images_per_concept=3,
        batch_size=2,
    )
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 1)
    write_json(tmp_path / "spec.json", spec)
    cache, manifest = tmp_path / "cache", tmp_path / "shards" / "0.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_SCRIPT,
            str(tmp_path / "spec.json"),
            str(tmp_path / "requests.json"),
            str(cache),
            str(manifest),
            json.dumps(MODEL),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]  # SIGKILL at the third batch
    assert not manifest.exists()
    done = list(cache.rglob("*.npz"))
    # 2 batches of 2 = 4 images: the first concept (3 seeds) is complete, its files written, unless they were
    # still queued on the shard's writer thread when the kill came (the writer may be one batch behind: then
    # it is lost and generated again); the first batch's thumbnails are written
    assert len(done) in (0, 1)
    # a kill in the middle of a write leaves only a temporary file: plant one, with a truncated JPEG in it
    entry_dirs = [p for p in cache.glob("*/*/*") if p.is_dir()]
    stray = entry_dirs[0] / "thumbs" / ".2.jpg.x1y2.partial"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    mtime = done[0].stat().st_mtime_ns if done else None

    flag.unlink()
    counter = Counting()
    m = run_shard(
        req, 0, spec, {"tiny": MODEL}, str(cache), str(manifest), device="cpu", load_generator_fn=counter
    )
    kept = 3 * len(done)
    assert m["n_generated"] == 12 - kept and len(counter.generated) == 12 - kept and m["n_cached"] == kept
    assert all(d.stat().st_mtime_ns == mtime for d in done)
    assert not list(cache.rglob("*.partial"))
    thumbs = list(cache.rglob("*.jpg"))
    assert len(thumbs) == 12
    for t in thumbs:
        with Image.open(t) as img:
            img.load()  # no truncated image anywhere
    # resumed results equal an uninterrupted run
    clean = run_shard(
        req,
        0,
        {**spec, "factory": "tinydiffusion:pattern_generator", "kwargs": {}},
        {"tiny": MODEL},
        str(tmp_path / "clean"),
        str(tmp_path / "clean.json"),
        device="cpu",
    )
    for a, b in zip(m["concepts"], clean["concepts"], strict=True):
        np.testing.assert_allclose(
            np.load(a["acts"]["tiny"])["pooled"], np.load(b["acts"]["tiny"])["pooled"], rtol=1e-6
        )


def test_shard_survives_another_job_cleaning_its_temporary_files(tmp_path, monkeypatch):
    """Shard jobs share the cache (the ablations' shards run beside the main ones); a job starting on a concept
    removes the temporary files it finds there, possibly one that another job is writing at that moment."""
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog", "cat"]])
    spec = gen_spec(shards=1)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 1)
    cache = tmp_path / "cache"
    cleaned = []
    real_replace = os.replace

    def other_job_cleans(src, dst):
        """The rename of a cache file, with another job's clean-up just before it, once per kind of file: the
        temporary file is written, then gone."""
        kind = Path(dst).suffix
        if kind in (".jpg", ".npz") and kind not in cleaned:
            cleaned.append(kind)
            removed = [p for p in cache.rglob(".*.partial") if p.unlink() is None]
            assert Path(src) in removed  # the file being renamed is one that clean_partials' pattern finds
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", other_job_cleans)
    m = generate_all(req, spec, tmp_path)[0]
    assert cleaned == [".jpg", ".npz"] and m["n_generated"] == 8
    assert len(list(cache.rglob("*.npz"))) == 2 and len(list(cache.rglob("*.jpg"))) == 8
    assert not list(cache.rglob("*.partial"))


def test_bad_inputs_name_the_problem(tmp_path):
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog"]])
    spec = gen_spec(shards=1)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 1)
    generate_all(req, spec, tmp_path)
    sel = tmp_path / "select.json"
    write_json(sel, select_summary(np.zeros(N_NEURONS), {0}))
    write_hyp(hyp, 3, [["never generated"]])
    with pytest.raises(VerifyError, match=r"'never generated'.*neuron 3"):
        run_activation_rate(
            str(hyp),
            str(sel),
            [str(tmp_path / "shards/0.json")],
            "tiny",
            *(str(tmp_path / f) for f in ("a.csv", "s.json", "n.csv")),
        )
    (hyp / "3.json").unlink()
    with pytest.raises(VerifyError, match="model 'other'"):
        run_activation_rate(
            str(hyp),
            str(sel),
            [str(tmp_path / "shards/0.json")],
            "other",
            *(str(tmp_path / f) for f in ("a.csv", "s.json", "n.csv")),
        )
    (hyp / "9.json").write_text("{not json")
    with pytest.raises(VerifyError, match="9.json"):
        run_requests([str(hyp)], str(tmp_path / "r.json"), "{}", 1)
    with pytest.raises(VerifyError, match="does not exist"):
        run_requests([str(tmp_path / "nope")], str(tmp_path / "r.json"), "{}", 1)
    with pytest.raises(VerifyError, match="shards"):
        run_shard(
            req, 0, gen_spec(shards=3), {"tiny": MODEL}, str(tmp_path / "c"), str(tmp_path / "m.json"), "cpu"
        )


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    from helpers import make_image_folder, run_snakemake, tiny_config
    from tinydiffusion import save_tiny_pipeline

    work = tmp_path_factory.mktemp("verify_e2e")
    images = make_image_folder(work / "images", n_per_class=6, corrupt=0)
    words = work / "words.txt"
    words.write_text("red\nblue\n$(rm -rf ~)\n", encoding="utf-8")
    pipe = save_tiny_pipeline(work / "tiny-sd")
    cfg = tiny_config(
        images,
        words,
        embedder={"source": "python", "factory": "tinyclip:projection_embedder"},
        hypothesize={"concepts_per_cluster": 10},  # every concept of the set is a hypothesis of every cluster
        generator={
            "source": "diffusers",
            "model": str(pipe),
            "resolution": 32,
            "images_per_concept": 3,
            "batch_size": 4,
            "shards": 2,
            "thumbnail_size": 16,
            "prompt": "a photo of {}",
        },
    )
    target = "results/tiny/pics/words/neuron_concepts.csv"
    first = run_snakemake(work / "run", cfg, targets=(target,))
    return work / "run", cfg, first, target


def _manifests(run: Path) -> list[dict]:
    """Every shard's current manifest: a job's for the shards the generation plan found work for, the plan's
    own for the others (a job's manifest from an earlier run may be stale)."""
    from sieve.verify.plan import PLAN_FILE, planned_manifest_path

    plan = read_json(run / "results/generate/plan" / PLAN_FILE)
    return [
        read_json(run / f"results/generate/shards/{s['shard']}.json")
        if s["work"]
        else read_json(planned_manifest_path(run / "results/generate/plan", s["shard"]))
        for s in plan["shards"]
    ]


@pytest.mark.workflow
@pytest.mark.slow
def test_snakemake_probe_to_neuron_concepts(e2e):
    from helpers import jobs_run

    run, cfg, proc, _ = e2e
    ran = jobs_run(proc)
    assert ran["generation_requests"] == 1 and ran["generate_shard"] == 2 and ran["activation_rate"] == 1
    res = run / "results/tiny/pics/words"
    sel = read_json(run / "results/tiny/pics/select/summary.json")
    table = read_csv(res / "neuron_concepts.csv")
    assert [int(r["neuron"]) for r in table] == list(range(sel["n_neurons"]))
    for r in table:
        info = sel["neurons"][r["neuron"]]
        assert (r["status"] in ("verified", "unverified")) == info["selected"]
    rows = read_csv(res / "verify/ar.csv")
    hyps = {int(p.stem) for p in (res / "hypotheses").glob("*.json")}
    assert rows and {int(r["neuron"]) for r in rows} == hyps
    summary = read_json(res / "verify/summary.json")
    assert summary["n_hypotheses"] == len(rows) and summary["n_selected"] == sel["n_selected"]
    assert summary["mean_ar_initial"] == pytest.approx(np.mean([float(r["ar"]) for r in rows]))
    manifests = _manifests(run)
    # the 3 concepts (every one a hypothesis and, the set being smaller than verify.controls, a control) and the
    # 3 neutral prompts of the control pool
    assert (
        sum(m["n_concepts"] for m in manifests) == 3 + 3 and sum(m["n_generated"] for m in manifests) == 6 * 3
    )
    assert set(rows[0]) >= {
        "ar_low",
        "ar_high",
        "control_rate",
        "auc",
        "f1",
        "kept_paper",
        "kept_specificity",
    }
    # independent reference: load the pipeline and the model in-process, generate, measure, compare AR
    g = load_generator(cfg["generator"] | {"steps": 1, "guidance_scale": 0.0}, "cpu")
    lm = load_model("tiny", cfg["models"]["tiny"], "cpu")
    for text in ("red", "$(rm -rf ~)"):
        x = torch.round(g.generate([f"a photo of {text}"] * 3, [0, 1, 2]) * 255) / 255
        pooled = lm.activations(lm.preprocess.from_batch(x), maps=False)[0].numpy()
        for r in (r for r in rows if r["concept"] == text):
            n = int(r["neuron"])
            want = np.mean(pooled[:, n] > sel["neurons"][str(n)]["threshold"])
            assert float(r["ar"]) == pytest.approx(want), (text, n)
    for p in run.rglob("*"):
        assert "rm -rf" not in str(p)


@pytest.mark.workflow
@pytest.mark.slow
def test_changing_the_verify_filter_reruns_only_the_activation_rate(e2e):
    """verify.filter and verify.max_control_rate are params of the Activation Rate step alone: a dry run after
    changing them lists that job and nothing of generation (the control pool is already measured)."""
    import yaml

    from helpers import jobs_run, run_snakemake

    run, cfg, _, target = e2e
    saved = (run / "config.yaml").read_text()
    try:
        changed = {**cfg, "verify": {"filter": "specificity", "max_control_rate": 0.1}}
        (run / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
        proc = run_snakemake(run, None, targets=(target,), extra=("-n",))
    finally:
        (run / "config.yaml").write_text(saved)
    assert dict(jobs_run(proc)) == {"activation_rate": 1}, proc.stdout[-3000:]
    assert "Params have changed" in proc.stdout + proc.stderr


@pytest.mark.workflow
@pytest.mark.slow
def test_generator_speed_settings_rerun_nothing_and_reach_the_shard_job(e2e, tmp_path):
    """generator.batch_size, channels_last, compile, compile_backend and compile_mode change no result: they are
    neither in the cache key nor params of a rule (the shard job gets them as resources), so a dry run after
    changing them has nothing to do. The next shard job that generates applies them (its log says so) and
    fills the same cache entries."""
    from helpers import copy_run, jobs_run, run_snakemake

    run, cfg, _, target = e2e
    work = copy_run(run, tmp_path / "run")
    speed = {
        "batch_size": 2,
        "channels_last": True,
        "compile": True,
        "compile_backend": "eager",
        "compile_mode": "max-autotune-no-cudagraphs",
    }
    fast = {**cfg, "generator": {**cfg["generator"], **speed}}
    dry = run_snakemake(work, fast, targets=(target,), extra=("-n",))
    assert jobs_run(dry) == Counter(), dry.stdout[-3000:]

    cache = work / "results/generate/cache"
    keys = {p.name for p in cache.iterdir() if p.name != "resolved"}
    more = {**fast, "generator": {**fast["generator"], "images_per_concept": 4}}  # one more seed each
    ran = jobs_run(run_snakemake(work, more, targets=(target,)))
    assert ran["generate_shard"] == 2, ran
    assert {p.name for p in cache.iterdir() if p.name != "resolved"} == keys  # the same generator key
    for shard in (0, 1):
        text = (work / f"logs/generate/generate_shard_{shard}.log").read_text()
        assert (
            "channels_last: unet, vae; torch.compile: unet, vae.decoder (backend eager, mode "
            "max-autotune-no-cudagraphs" in text
        ), text[-2000:]


@pytest.mark.workflow
@pytest.mark.slow
def test_snakemake_reruns_generate_only_new_concepts_and_verify_ablation(e2e):
    from helpers import jobs_run, run_snakemake

    run, cfg, _, target = e2e
    before = {p: p.stat().st_mtime_ns for p in (run / "results/generate/cache").rglob("*.npz")}
    words = Path(cfg["concept_sets"]["words"]["path"])
    words.write_text(words.read_text(encoding="utf-8") + "green\nsky\n", encoding="utf-8")
    proc = run_snakemake(run, None, targets=(target,))
    ran = jobs_run(proc)
    assert "probe_activations" not in ran and "embed_crops" not in ran
    work = read_json(run / "results/generate/plan/plan.json")["work"]
    assert ran["generate_shard"] == len(work) >= 1  # only the shards that the new concepts fall into
    manifests = _manifests(run)
    assert sum(m["n_concepts"] for m in manifests) == 5 + 3  # and the 3 neutral prompts
    assert sum(m["n_generated"] for m in manifests) == 2 * 3  # only the two new concepts
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    n_rows = len(read_csv(run / "results/tiny/pics/words/verify/ar.csv"))

    # the "no Verify" ablation recomputes only the ARs and the filter: no generation, no network
    cfg2 = {**cfg, "verify": {"enabled": False}}
    (run / "config.yaml").write_text(__import__("yaml").safe_dump(cfg2, sort_keys=False))
    proc = run_snakemake(run, None, targets=(target,))
    assert dict(jobs_run(proc)) == {"activation_rate": 1}
    summary = read_json(run / "results/tiny/pics/words/verify/summary.json")
    assert summary["verify_enabled"] is False and summary["n_kept"] == summary["n_hypotheses"] == n_rows


def test_no_hypotheses_gives_empty_but_valid_outputs(tmp_path):
    hyp = tmp_path / "hypotheses"
    hyp.mkdir()
    write_json(hyp / "0.json", {"neuron": 0, "concept_set": "w", "method": "sieve", "clusters": []})
    spec = gen_spec(shards=1)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 1)
    counter = Counting()
    m = generate_all(req, spec, tmp_path, counter=counter)[0]
    assert m["n_concepts"] == 0 and counter.loads == 0
    sel = tmp_path / "select.json"
    write_json(sel, select_summary(np.zeros(N_NEURONS), {0, 1}))
    s = run_activation_rate(
        str(hyp),
        str(sel),
        [str(tmp_path / "shards/0.json")],
        "tiny",
        *(str(tmp_path / f) for f in ("ar.csv", "s.json", "nc.csv")),
    )
    assert s["n_hypotheses"] == 0 and s["n_verified"] == 0 and s["n_unverified"] == 2
    assert read_json(tmp_path / "s.json")["mean_ar_initial"] is None  # strict JSON: NaN -> null
    assert read_csv(tmp_path / "ar.csv") == []
    assert [r["status"] for r in read_csv(tmp_path / "nc.csv")][:3] == [
        "unverified",
        "unverified",
        "not_selected",
    ]


def test_cache_keys_follow_the_contents_of_local_files(tmp_path):
    """A world spec or checkpoint edited in place must not reuse cached images or activations."""
    from sieve.backends.generators import generator_settings
    from sieve.verify.cache import model_key

    spec = tmp_path / "world.yaml"
    spec.write_text("noise: 0.1\n")
    gen = {"source": "synthetic", "spec": str(spec)}
    model = {"source": "synthetic", "spec": str(spec)}
    g1, m1 = generator_settings(gen, "float32"), model_key(model, "float32")
    assert generator_settings(gen, "float32") == g1 and model_key(model, "float32") == m1  # stable
    spec.write_text("noise: 0.25\n")
    assert generator_settings(gen, "float32") != g1 and model_key(model, "float32") != m1

    ckpt = tmp_path / "r.pth"
    torch.save({"w": torch.zeros(2)}, ckpt)
    tv = {"source": "torchvision", "arch": "resnet18", "weights": str(ckpt)}
    k1 = model_key(tv, "float32")
    torch.save({"w": torch.ones(2)}, ckpt)  # retrained in place: same path, same size
    assert model_key(tv, "float32") != k1
    hub = {"source": "torchvision", "arch": "resnet50", "weights": "IMAGENET1K_V1"}
    assert model_key(hub, "float32") == model_key(dict(hub), "float32")  # hub names: no file to read
    # one measurement, one key: the resolved dtype counts, not how it was requested (auto on a CPU = float32)
    assert model_key({**hub, "dtype": "auto"}, "float32") == model_key({**hub, "dtype": "float32"}, "float32")
    assert model_key({**hub, "dtype": "auto"}, "bfloat16") != model_key(hub, "float32")


PLANNER_SCRIPT = r"""
import json, sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np
from sieve.verify.cache import CacheEntry
from sieve.verify.shard import plan_shard
root, keep, mkeys = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
entries = [CacheEntry(root, "g", k) for k in ("aa01", "bb02", "cc03")]
plan = plan_shard(entries, [0, 1, 2], keep, mkeys)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print(json.dumps({"generate": plan.generate, "from_images": plan.from_images, "n_cached": plan.n_cached,
                  "per_concept": plan.items_per_concept()}))
"""


def _plan_without_torch(root: Path, keep: str, mkeys: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", PLANNER_SCRIPT, str(root), keep, json.dumps(mkeys)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_shard_planner_decides_from_the_cache_alone_without_torch(tmp_path):
    """The pure planning phase of a shard: what to generate, what is cached, what to measure from kept full
    images; it runs with torch unimportable."""
    from sieve.verify.cache import CacheEntry

    root = tmp_path / "cache"
    a, b, c = (CacheEntry(root, "g", k) for k in ("aa01", "bb02", "cc03"))
    # concept 0: complete for model m1 (acts for all seeds, thumbnails); model m2 never measured
    a.write_acts("m1", {s: np.zeros(4, np.float32) for s in (0, 1, 2)})
    for s in (0, 1, 2):
        a.thumb(s).parent.mkdir(parents=True, exist_ok=True)
        a.thumb(s).write_bytes(b"jpg")
    # concept 1: seeds 0 and 1 done for both models, with thumbnails and full images of seed 0 and 2
    b.write_acts("m1", {s: np.zeros(4, np.float32) for s in (0, 1)})
    b.write_acts("m2", {s: np.zeros(4, np.float32) for s in (0, 1)})
    for s in (0, 1):
        b.thumb(s).parent.mkdir(parents=True, exist_ok=True)
        b.thumb(s).write_bytes(b"jpg")
    for s in (0, 2):
        b.image(s).parent.mkdir(parents=True, exist_ok=True)
        b.image(s).write_bytes(b"png")
    # concept 2: nothing at all

    one = _plan_without_torch(root, "thumbnails", ["m1"])
    assert one["generate"] == [[1, 2], [2, 0], [2, 1], [2, 2]]  # b's seed 2 lacks a thumbnail; c everything
    assert one["from_images"] == [] and one["n_cached"] == 9 - 4
    assert one["per_concept"] == {"1": 1, "2": 3}

    two = _plan_without_torch(root, "thumbnails", ["m1", "m2"])
    # a: m2 lacks every seed and no full image is kept -> generate again; b seed 2: generate (no thumbnail)
    assert two["generate"] == [[0, 0], [0, 1], [0, 2], [1, 2], [2, 0], [2, 1], [2, 2]]
    assert two["from_images"] == [] and two["n_cached"] == 2

    full = _plan_without_torch(root, "full", ["m1", "m2"])
    # keep full: a has no full images -> generate; b seed 1 has no full image -> generate, seed 2 has one but
    # lacks activations -> measured from the stored image
    assert full["generate"] == [[0, 0], [0, 1], [0, 2], [1, 1], [2, 0], [2, 1], [2, 2]]
    assert full["from_images"] == [[1, 2]] and full["n_cached"] == 1

    none = _plan_without_torch(root, "none", ["m1"])
    # keep nothing: only missing activations count; b seed 2 has a full image on disk -> measured from it
    assert none["generate"] == [[2, 0], [2, 1], [2, 2]] and none["from_images"] == [[1, 2]]


def test_shard_writer_runs_writes_in_order_and_hands_back_the_first_error():
    from sieve.verify.shard import ShardWriter

    done: list[int] = []

    def fail() -> None:
        raise OSError("disk full")

    writer = ShardWriter(max_pending=2)
    for i in range(5):
        writer.submit(done.append, i)
    writer.submit(fail)
    writer.submit(done.append, 99)  # skipped: a write failed before it
    mark = writer.mark()
    assert mark.wait(10)  # marks still run after an error: nobody waits forever
    with pytest.raises(OSError, match="disk full"):
        writer.close()
    assert done == [0, 1, 2, 3, 4]


def test_shards_of_one_job_load_the_pipeline_once_and_equal_separate_jobs(tmp_path):
    """generator.shards_per_job: the job's first shard generates every shard of the job with one pipeline and
    one set of models; the others then find their concepts cached and load nothing. The cache and the
    activations equal one job per shard, and the manifests count every image once."""
    from sieve.verify.plan import shard_jobs

    assert shard_jobs([0, 2, 3, 5, 6], 2) == [[0, 2], [3, 5], [6]]
    assert shard_jobs([1, 4], 1) == [[1], [4]]
    hyp = tmp_path / "hypotheses"
    write_hyp(hyp, 0, [["dog", "cat", "tree"], ["sky", "car", "boat"]])
    spec = gen_spec(shards=3)
    req = run_requests([str(hyp)], str(tmp_path / "requests.json"), spec["prompt"], 3)
    shards = sorted({int(c["shard"]) for c in req["concepts"]})
    assert len(shards) >= 2  # the job really spans shards
    root = tmp_path / "together"
    lead, loads = Counting(), []
    first = run_shard(
        req,
        shards[0],
        spec,
        {"tiny": MODEL},
        str(root / "cache"),
        str(root / f"{shards[0]}.json"),
        device="cpu",
        load_generator_fn=lead,
        together=shards[1:],
    )
    assert lead.loads == 1 and first["job_shards"] == shards
    assert first["n_generated"] == len(req["concepts"]) * 4 == len(lead.generated)
    assert first["n_cached"] == 0 and {c["key"] for c in first["concepts"]} == {
        c["key"] for c in req["concepts"] if c["shard"] == shards[0]
    }

    def no_load(*args):
        loads.append(args)
        raise AssertionError("a shard of the job loaded something")

    rest = [
        run_shard(
            req,
            s,
            spec,
            {"tiny": MODEL},
            str(root / "cache"),
            str(root / f"{s}.json"),
            device="cpu",
            load_generator_fn=no_load,
            load_model_fn=no_load,
        )
        for s in shards[1:]
    ]
    assert not loads and all(m["n_generated"] == 0 and "job_shards" not in m for m in rest)
    separate = {m["shard"]: m for m in generate_all(req, spec, tmp_path / "separate")}
    for m in [first, *rest]:
        for a, b in zip(m["concepts"], separate[m["shard"]]["concepts"], strict=True):
            assert a["key"] == b["key"] and len(a["thumbs"]) == len(b["thumbs"]) == 4
            # equal up to float rounding: the images are measured in other batches (like a change of batch size)
            np.testing.assert_allclose(
                np.load(a["acts"]["tiny"])["pooled"],
                np.load(b["acts"]["tiny"])["pooled"],
                rtol=1e-6,
                atol=1e-6,
            )


@pytest.mark.workflow
def test_a_local_run_with_all_shards_in_one_job_loads_the_pipeline_once(tmp_path):
    from helpers import jobs_run, make_image_folder, run_snakemake, tiny_config

    images = make_image_folder(tmp_path / "images", n_per_class=6, corrupt=0)
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\ngreen\nyellow\n", encoding="utf-8")
    cfg = tiny_config(
        images,
        words,
        embedder={"source": "python", "factory": "tinyclip:projection_embedder"},
        hypothesize={"concepts_per_cluster": 10},
        generator={**gen_spec(shards=3, shards_per_job=3), "prompt": "a photo of {}"},
    )
    cfg["hypothesize"]["methods"] = ["sieve"]
    proc = run_snakemake(tmp_path / "run", cfg, targets=("results/tiny/pics/words/neuron_concepts.csv",))
    run = tmp_path / "run"
    plan = read_json(run / "results/generate/plan/plan.json")
    assert jobs_run(proc)["generate_shard"] == len(plan["work"]) >= 2
    logs = sorted((run / "logs/generate").glob("generate_shard_*.log"))
    loaded = [p.name for p in logs if "loaded the generator" in p.read_text()]
    assert loaded == [f"generate_shard_{plan['work'][0]}.log"]  # one pipeline load for the run
    manifests = [read_json(run / f"results/generate/shards/{s}.json") for s in plan["work"]]
    assert manifests[0]["job_shards"] == plan["work"]
    assert sum(m["n_generated"] for m in manifests) == manifests[0]["n_generated"] > 0


@pytest.mark.parametrize("keep", ["thumbnails", "full", "none"])
def test_a_new_concept_is_planned_like_an_empty_folder(tmp_path, keep):
    """plan_concept's shortcut for an entry without a folder gives what looking up its files in an empty folder
    gives: every seed (sorted, once) to generate; with keep_images none and no model, nothing."""
    from sieve.verify.cache import CacheEntry
    from sieve.verify.shard import plan_concept

    new, empty = CacheEntry(tmp_path, "g", "abc123"), CacheEntry(tmp_path, "g", "def456")
    empty.dir.mkdir(parents=True)
    seeds = [3, 1, 2, 1]
    for mkeys in (["m1", "m2"], []):
        got = plan_concept(new, seeds, keep, iter(mkeys))
        assert got == plan_concept(empty, seeds, keep, iter(mkeys))
        assert got == (([1, 2, 3], []) if keep != "none" or mkeys else ([], []))
    assert not new.dir.exists()
