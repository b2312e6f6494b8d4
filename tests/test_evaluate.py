"""Evaluation: final-layer metrics (both protocols), the mpnet encoder, neuron ablation, tau sweeps, and one
end-to-end run with the CLIP-Dissect baseline through Verify."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from test_baselines import numpy_soft_wpmi

from helpers import SMALL_SYNTHETIC, jobs_run, make_image_folder, run_snakemake
from sieve.evaluate import EvaluateError
from sieve.evaluate.final_layer import SentenceEncoder, protocol_scores, read_ground_truth, synonyms
from sieve.evaluate.neuron_ablation import (
    accuracy_drop_table,
    best_verified_neurons,
    run_neuron_ablation,
    zero_channel,
)
from sieve.evaluate.sweep import select_at_tau, sweep_table
from sieve.io import read_json, write_csv
from sieve.verify.activation_rate import AR_COLUMNS

WORDS = ["red", "blue", "green", "dog", "cat", "stripes", "lime", "crimson"]


def toy_vec(text: str, dim: int = 8) -> np.ndarray:
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


def toy_encoder(texts: list[str]) -> np.ndarray:
    return np.stack([toy_vec(t) for t in texts])


def make_sentence_model(folder: Path) -> Path:
    """A tiny BERT and its word-piece tokenizer, random weights, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *"abcdefghijklmnopqrstuvwxyz",
        *["##" + c for c in "abcdefghijklmnopqrstuvwxyz"],
        *WORDS,
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=len(vocab),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        )
    ).save_pretrained(folder)
    return folder


def manual_mean_pooling(folder: Path, texts: list[str]) -> np.ndarray:
    """One text at a time (no padding): the mean of its token embeddings, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for t in texts:
            h = model(**tok(t, return_tensors="pt")).last_hidden_state[0].double().numpy()
            v = h.mean(axis=0)
            out.append(v / np.linalg.norm(v))
    return np.stack(out)


# ------------------------------------------------------------------------------------------ final-layer metrics


def test_protocols_against_hand_computation():
    classes = ["tench, Tinca tinca", "goldfish", "Great White shark, white shark"]
    predicted = {0: ["Tench", "fish"], 1: ["carp"], 2: ["great white shark", "shark"]}
    got = protocol_scores(predicted, classes, {"clip": toy_encoder})
    cd, www = got["clip_dissect"], got["www"]
    # CLIP-Dissect: best label vs the whole class string, raw text
    want_cd = np.mean(
        [
            toy_vec("Tench") @ toy_vec("tench, Tinca tinca"),
            toy_vec("carp") @ toy_vec("goldfish"),
            toy_vec("great white shark") @ toy_vec("Great White shark, white shark"),
        ]
    )
    assert cd["clip_cos"] == pytest.approx(want_cd, abs=1e-12)
    assert cd["top1_accuracy"] == 0.0 and cd["n_neurons"] == 3  # no label is the whole synonym string
    # WWW: every concept vs every synonym, lower-cased, mean per neuron, then over neurons
    n0 = np.mean([toy_vec(c) @ toy_vec(s) for c in ("tench", "fish") for s in ("tench", "tinca tinca")])
    n1 = toy_vec("carp") @ toy_vec("goldfish")
    n2 = np.mean(
        [
            toy_vec(c) @ toy_vec(s)
            for c in ("great white shark", "shark")
            for s in ("great white shark", "white shark")
        ]
    )
    assert www["clip_cos"] == pytest.approx(np.mean([n0, n1, n2]), abs=1e-12)
    assert www["top1_accuracy"] == pytest.approx(2 / 3)  # "Tench" and "great white shark" are synonyms
    assert synonyms(" A ,  b  C,, ") == ["a", "b c"]
    # neurons without labels are left out; a label on a neuron without a class is an error
    assert protocol_scores({0: [], 1: ["goldfish"]}, classes, {"m": toy_encoder})["clip_dissect"] == {
        "n_neurons": 1,
        "m_cos": pytest.approx(1.0),
        "top1_accuracy": 1.0,
    }
    with pytest.raises(EvaluateError, match="neuron 5 has no ground-truth class"):
        protocol_scores({5: ["x"]}, classes, {"m": toy_encoder})


def test_ground_truth_file_errors(tmp_path):
    gt = tmp_path / "classes.txt"
    gt.write_text("a\nb, bee\n", encoding="utf-8")
    assert read_ground_truth(gt, 2) == ["a", "b, bee"]
    with pytest.raises(EvaluateError, match=r"classes.txt lists 2 classes but the analysed layer has 3"):
        read_ground_truth(gt, 3)
    with pytest.raises(EvaluateError, match="not found"):
        read_ground_truth(tmp_path / "missing.txt")
    gt.write_text("a\n\nc\n", encoding="utf-8")
    with pytest.raises(EvaluateError, match="class 1 .line 2. is blank"):
        read_ground_truth(gt)


def test_sentence_encoder_is_mean_pooling_of_a_local_model(tmp_path):
    folder = make_sentence_model(tmp_path / "mpnet")
    enc = SentenceEncoder(str(folder))
    texts = ["red", "green lime", "a striped cat"]  # different lengths: padding must not change the result
    got = enc.encode_text(texts, batch_size=3).double().numpy()
    np.testing.assert_allclose(got, manual_mean_pooling(folder, texts), atol=1e-5)
    from sieve.backends import BackendError

    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="evaluate.mpnet_model .*empty.* cannot be loaded"):
        SentenceEncoder(str(tmp_path / "empty"))


# ---------------------------------------------------------------------------------------------- neuron ablation


def test_ablation_hook_equals_zeroed_weights(tmp_path):
    from sieve.backends.imagesets import open_image_set
    from sieve.backends.models import load_model

    make_image_folder(tmp_path / "imgs", n_per_class=5, classes=("c0", "c1", "c2"), size=20, corrupt=1)
    probe = open_image_set("pics", {"kind": "imagefolder", "path": str(tmp_path / "imgs")})
    spec = {"source": "python", "factory": "tinymodels:hotspot_cnn", "layer": "layer4"}
    lm = load_model("tiny", spec)
    docs = run_neuron_ablation(
        lm, probe, [1, 5], str(tmp_path / "abl"), class_names=["x", "y", "z"], batch_size=4
    )
    # reference: the same model with conv channel n's weights and bias zeroed (ReLU(0) = 0 = the ablation)
    ref = load_model("tiny", spec)
    xs, ys = [], []
    for i in range(len(probe)):
        try:
            img = probe.load(i)
        except Exception:  # noqa: BLE001 - the corrupt file
            continue
        xs.append(ref.preprocess.normalize(ref.preprocess.geometric(img)))
        ys.append(probe.labels[i])
    x, y = torch.stack(xs), np.array(ys)
    with torch.no_grad():
        base = ref.model(x).argmax(1).numpy()
        for n in (1, 5):
            conv = ref.model.layer4[0]
            w, b = conv.weight.clone(), conv.bias.clone()
            conv.weight[n] = 0
            conv.bias[n] = 0
            abl = ref.model(x).argmax(1).numpy()
            conv.weight.copy_(w)
            conv.bias.copy_(b)
            doc = docs[n]
            assert doc["n_images"] == len(y) == 15
            assert doc["accuracy"] == pytest.approx(np.mean(base == y))
            assert doc["ablated_accuracy"] == pytest.approx(np.mean(abl == y))
            assert doc["classes"] == accuracy_drop_table(base, abl, y, 3, ["x", "y", "z"])
            drops = [r["drop"] for r in doc["classes"]]
            assert drops == sorted(drops, reverse=True)
            assert read_json(tmp_path / "abl" / f"{n}.json") == doc
            with Image.open(tmp_path / "abl" / f"{n}.png") as im:
                assert im.size[0] > 100
    # unlabelled probe, unknown neuron, wrong class names: clear errors
    with pytest.raises(EvaluateError, match=r"neuron\(s\) \[8\] do not exist in layer 'layer4'"):
        run_neuron_ablation(lm, probe, [8], str(tmp_path / "x"))
    probe.labels = None
    with pytest.raises(EvaluateError, match="needs a labelled probe set"):
        run_neuron_ablation(lm, probe, [0], str(tmp_path / "x"))


def test_zero_channel_layouts():
    conv, tokens, flat = torch.ones(2, 3, 4, 4), torch.ones(2, 5, 3), torch.ones(2, 3)
    assert zero_channel(conv, 1)[:, 1].abs().sum() == 0 and zero_channel(conv, 1).sum() == 2 * 2 * 16
    assert zero_channel(tokens, 2)[..., 2].abs().sum() == 0 and zero_channel(tokens, 2).sum() == 2 * 5 * 2
    assert zero_channel(flat, 0).tolist() == [[0, 1, 1], [0, 1, 1]]


# ---------------------------------------------------------------------------------------------------- sweeps


def test_select_at_tau_and_table():
    summary = {
        "tau": 2.0,
        "n_neurons": 4,
        "neurons": {
            "0": {"ratio": 3.0, "dead": False, "selected": True},
            "1": {"ratio": "inf", "dead": False, "selected": True},
            "2": {"ratio": 0.0, "dead": True, "selected": False},
            "3": {"ratio": 8.0, "dead": False, "selected": True},
        },
    }
    at5 = select_at_tau(summary, 5)
    assert [k for k, v in at5["neurons"].items() if v["selected"]] == ["1", "3"] and at5["n_selected"] == 2
    assert select_at_tau(summary, 8)["n_selected"] == 1  # strictly greater than tau
    assert summary["neurons"]["0"]["selected"]  # the input is not modified
    table = sweep_table(
        {
            8.0: {"n_selected": 1, "n_verified": 1, "n_hypotheses": 2},
            5.0: {"n_selected": 2, "n_verified": 1, "n_hypotheses": 4},
        },
        4,
    )
    assert list(table) == ["tau=5", "tau=8"]
    assert table["tau=5"]["selected_share"] == 0.5 and table["tau=5"]["verified_share"] == 0.5


@pytest.mark.workflow
def test_sweep_hypotheses_are_generated_without_sieve_verify(tmp_path):
    """`method: clip_dissect` alone drops SIEVE's hypotheses from the generation requests; a tau sweep that reuses
    them (its smallest tau >= select.tau) must still get their images, or its Verify finds no manifest."""
    from helpers import tiny_config

    images = make_image_folder(tmp_path / "imgs", n_per_class=2, corrupt=0)
    (tmp_path / "words.txt").write_text("red\nblue\n", encoding="utf-8")
    cfg = tiny_config(
        images,
        tmp_path / "words.txt",
        embedder={"source": "python", "factory": "tinyclip:projection_embedder"},
        generator={
            "source": "python",
            "factory": "tinydiffusion:pattern_generator",
            "resolution": 16,
            "images_per_concept": 2,
            "shards": 1,
        },
        hypothesize={"method": "clip_dissect"},
        sweeps={"select.tau": [1.5, 2]},
    )
    proc = run_snakemake(
        tmp_path / "run", cfg, targets=("results/tiny/pics/words/sweeps/tau.json",), extra=("-n",)
    )
    out = proc.stdout + proc.stderr
    inputs = {
        m.group(1): set(m.group(2).split(", ")) for m in re.finditer(r"rule (\w+):\n\s+input: ([^\n]*)", out)
    }
    assert "results/tiny/pics/words/hypotheses" in inputs["sweep_tau"]
    assert "results/tiny/pics/words/hypotheses" in inputs["generation_requests"], inputs[
        "generation_requests"
    ]


# ------------------------------------------------------------------------------------------------ end to end


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.workflow
@pytest.mark.slow
def test_end_to_end_baseline_metrics_ablation_and_sweep(tmp_path):
    make_image_folder(tmp_path / "imgs", n_per_class=4, classes=("c0", "c1", "c2"), size=20, corrupt=0)
    (tmp_path / "gt.txt").write_text("red, crimson\nblue\nGreen, lime\n", encoding="utf-8")
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    bert = make_sentence_model(tmp_path / "mpnet")
    cfg = {
        "models": {
            "tiny": {
                "source": "python",
                "factory": "tinymodels:hotspot_cnn",
                "layer": "fc",
                "ground_truth": str(tmp_path / "gt.txt"),
                "batch_size": 8,
            }
        },
        "probes": {"pics": {"kind": "imagefolder", "path": str(tmp_path / "imgs")}},
        "concept_sets": {"words": {"path": str(tmp_path / "words.txt")}},
        "device": "cpu",
        "num_workers": 0,
        "select": {"tau": 1.2, "top_n": 4},
        "embedder": {"source": "python", "factory": "tinyclip:projection_embedder"},
        "generator": {
            "source": "python",
            "factory": "tinydiffusion:pattern_generator",
            "resolution": 16,
            "images_per_concept": 3,
            "shards": 1,
        },
        "hypothesize": {"methods": ["sieve", "clip_dissect"], "clip_dissect": {"top_images": 5}},
        "evaluate": {"ablate_neurons": {"tiny": [0, 2]}, "mpnet_model": str(bert)},
        "sweeps": {"select.tau": [1.1, 1.2, 3]},
    }
    work = tmp_path / "run"
    run_dir = work / "results/tiny/pics/words"
    base = run_dir / "baselines/clip_dissect"
    targets = (
        "results/tiny/pics/words/final_layer_metrics.json",
        "results/tiny/pics/words/sweeps/tau.json",
        "results/tiny/pics/ablation",
    )
    run_snakemake(work, cfg, targets=targets)

    # CLIP-Dissect labels = the numpy transcription of SoftWPMI on the stored embeddings
    with h5py.File(work / "results/tiny/pics/activations.h5") as f:
        acts = f["activations"][()]
    with h5py.File(work / "results/tiny/pics/clip_dissect/image_embeddings.h5") as f:
        rows, img_emb = f["rows"][()], f["embeddings"][()]
    with h5py.File(work / "results/concepts/words/embeddings.h5") as f:
        txt_emb = f["embeddings"][()]
    full = np.ones((acts.shape[0], img_emb.shape[1]))
    full[rows] = img_emb
    want = numpy_soft_wpmi(full, txt_emb.astype(np.float64), acts, 5).argmax(axis=1)
    labels = read_csv(base / "labels.csv")
    assert [r["label"] for r in labels] == [WORDS[j] for j in want]
    # ... and they went through Verify's own code, on the shared cache
    ar = read_csv(base / "verify/ar.csv")
    selected = {
        int(k)
        for k, v in read_json(work / "results/tiny/pics/select/summary.json")["neurons"].items()
        if v["selected"]
    }
    assert {(int(r["neuron"]), r["concept"]) for r in ar} == {(n, labels[n]["label"]) for n in selected}
    assert read_json(base / "verify/summary.json")["method"] == "clip_dissect"
    requested = {
        t for c in read_json(work / "results/generate/requests.json")["concepts"] for t in c["texts"]
    }
    assert {r["concept"] for r in ar} <= requested

    # final-layer metrics: CLIP-Dissect's own row recomputed here
    from tinyclip import ProjectionEmbedder

    m = read_json(run_dir / "final_layer_metrics.json")
    gt = ["red, crimson", "blue", "Green, lime"]
    row = m["clip_dissect / all_neurons / clip_dissect"]
    emb = ProjectionEmbedder()
    lab = [r["label"] for r in labels]
    want_clip = np.mean([float(emb.encode_text([lab[n]])[0] @ emb.encode_text([gt[n]])[0]) for n in range(3)])
    mp = manual_mean_pooling(bert, lab + gt)
    want_mpnet = np.mean([mp[n] @ mp[3 + n] for n in range(3)])
    assert row["n_neurons"] == 3 and row["clip_cos"] == pytest.approx(want_clip, abs=1e-5)
    assert row["mpnet_cos"] == pytest.approx(want_mpnet, abs=1e-4)
    assert row["top1_accuracy"] == pytest.approx(np.mean([lab[n] == gt[n].lower() for n in range(3)]))
    www = m["clip_dissect / all_neurons / www"]
    assert www["top1_accuracy"] == pytest.approx(np.mean([lab[n] in synonyms(gt[n]) for n in range(3)]))
    assert {k.split(" / ")[0] for k in m} == {"sieve", "clip_dissect"}

    # sweep: the run's own tau reproduces the run's Verify summary; selection shrinks with tau
    table = read_json(run_dir / "sweeps/tau.json")
    main = read_json(run_dir / "verify/summary.json")
    same = table["tau=1.2"]
    for key in ("n_selected", "n_hypotheses", "mean_ar_initial", "n_kept", "mean_ar_kept", "n_verified"):
        assert same[key] == pytest.approx(main[key]), key
    sel = [table[k]["n_selected"] for k in ("tau=1.1", "tau=1.2", "tau=3")]
    assert sel == sorted(sel, reverse=True)
    assert (work / "results/sweeps/tiny/pics/words/tau_3/neuron_concepts.csv").is_file()

    # ablation plots exist for each neuron, JSON sorted by drop
    for n in (0, 2):
        doc = read_json(work / f"results/tiny/pics/ablation/{n}.json")
        assert doc["neuron"] == n and [c["name"] for c in doc["classes"]][0] in gt
        assert (work / f"results/tiny/pics/ablation/{n}.png").stat().st_size > 1000

    # a new tau reuses everything: no probe, no Select/Hypothesize rerun, no image generated
    shard = work / "results/generate/shards/0.json"
    before = (shard.stat().st_mtime_ns, read_json(shard)["n_generated"])
    assert before[1] > 0
    cfg["sweeps"]["select.tau"] = [1.1, 1.2, 3, 5]
    proc = run_snakemake(work, cfg, targets=targets)
    ran = jobs_run(proc)
    assert ran["sweep_tau"] == 1 and ran["sweep_table"] == 1, ran
    for rule in (
        "probe_activations",
        "sweep_select",
        "sweep_embed_crops",
        "hypothesize",
        "generate_shard",
        "clip_dissect",
        "ablate_neurons",
    ):
        assert ran[rule] == 0, (rule, ran)
    assert "tau=5" in read_json(run_dir / "sweeps/tau.json")
    assert (shard.stat().st_mtime_ns, read_json(shard)["n_generated"]) == before


# ------------------------------------------------------------------------------------------------ planted truth


def write_method_result(folder: Path, labels: dict[int, str], n_neurons: int) -> list[str]:
    """Verify's three files for one-label-per-neuron hypotheses, every label kept with AR 1."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "ar.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(AR_COLUMNS)
        for n, t in labels.items():
            w.writerow([n, 0, t, t, 0, 0.1, 4, 4, 1.0, 1])
    with open(folder / "neuron_concepts.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["neuron", "status", "concepts"])
        for n in range(n_neurons):
            w.writerow(
                [
                    n,
                    "verified" if n in labels else "not_selected",
                    json.dumps([labels[n]] if n in labels else []),
                ]
            )
    (folder / "summary.json").write_text(
        json.dumps(
            {
                "n_hypotheses": len(labels),
                "mean_ar_initial": 1.0,
                "mean_ar_kept": 1.0,
                "n_verified": len(labels),
            }
        )
    )
    return [str(folder / f) for f in ("ar.csv", "summary.json", "neuron_concepts.csv")]


def test_truth_summary_gets_every_method_side_by_side(tmp_path):
    from sieve.evaluate.truth import add_methods_to_truth, run_truth
    from sieve.synthetic.world import load_world

    world = load_world("default")
    n = len(world.neurons)
    select = tmp_path / "select.json"
    select.write_text(
        json.dumps(
            {
                "n_neurons": n,
                "neurons": {
                    str(i): {"selected": bool(nr.concepts), "ratio": 20} for i, nr in enumerate(world.neurons)
                },
            }
        )
    )
    right = {
        nr.index: nr.concepts[0] for nr in world.neurons if len(nr.concepts) == 1
    }  # single-concept neurons
    wrong = {nr.index: "dog" for nr in world.neurons if nr.concepts}
    sieve = write_method_result(tmp_path / "sieve", right, n)
    base = write_method_result(tmp_path / "cd", wrong, n)
    out = tmp_path / "truth_summary.json"
    run_truth("default", str(select), sieve[2], sieve[0], sieve[1], str(tmp_path / "truth.csv"), str(out))
    s = add_methods_to_truth(
        str(out), "default", str(select), {"clip_dissect": base}, sieve_verify_summary=sieve[1]
    )
    n_planted = sum(len(nr.concepts) for nr in world.neurons)
    assert s["recovery"] == pytest.approx(len(right) / n_planted)  # the truth stage's own number, untouched
    assert s["clip_dissect"]["recovery"] == 0 and s["clip_dissect"]["hypotheses"]["n_wrong"] == len(wrong)
    assert s["methods"]["sieve"]["recovery"] == s["recovery"] and s["methods"]["sieve"]["n_verified"] == len(
        right
    )
    assert s["methods"]["clip_dissect"]["n_verified"] == len(wrong)
    on_disk = read_json(out)  # (NaN means are written as null)
    assert (
        on_disk["methods"] == json.loads(json.dumps(s["methods"]))
        and on_disk["clip_dissect"]["recovery"] == 0
    )
    with pytest.raises(EvaluateError, match="missing .'ar.csv'."):
        add_methods_to_truth(str(out), "default", str(select), {"clip_dissect": base[1:]})


def test_a_published_class_list_is_fetched_checked_and_cleaned_as_clip_dissect_does(tmp_path):
    """ground_truth: {url, sha256, clean: places365}: CSAIL's category lines become CLIP-Dissect's class
    names (``cls[3:].split(' ')[0]``); a wrong checksum stops with the URL; an unknown cleaner is named."""
    import hashlib

    from sieve.concepts import ConceptSetError
    from sieve.evaluate.final_layer import clean_class_names, fetch_ground_truth

    raw = tmp_path / "categories_places365.txt"
    raw.write_bytes(b"/a/airfield 0\n/a/apartment_building/outdoor 8\n/b/bakery/shop 17\n")
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    spec = {"url": raw.as_uri(), "sha256": digest, "clean": "places365"}
    out = tmp_path / "resources/ground_truth/m/classes.txt"
    names = fetch_ground_truth(spec, str(out), str(tmp_path / "downloads"))
    assert names == ["airfield", "apartment_building/outdoor", "bakery/shop"]
    assert read_ground_truth(out, 3) == names
    assert (tmp_path / "downloads" / f"{digest}.txt").read_bytes() == raw.read_bytes()
    assert clean_class_names(["tench, Tinca tinca", ""]) == ["tench, Tinca tinca"]  # none: as written
    with pytest.raises(ConceptSetError, match="checksum mismatch for class list .*categories_places365.txt"):
        fetch_ground_truth({**spec, "sha256": "0" * 64}, str(out), str(tmp_path / "other"))
    with pytest.raises(EvaluateError, match="ground_truth.clean must be one of none, places365, not 'wnid'"):
        clean_class_names(["x"], "wnid")


@pytest.mark.workflow
def test_rule_ground_truth_list_fetches_checks_and_cleans(tmp_path):
    """models.*.ground_truth as url + sha256: rule ground_truth_list writes the cleaned class list the
    final-layer rules read, and keeps the checked download (what `snakemake prefetch` fills for offline
    nodes) under resources/ground_truth/."""
    import hashlib

    from helpers import make_image_folder, run_snakemake, tiny_config

    make_image_folder(tmp_path / "imgs", n_per_class=2, corrupt=0)
    raw = tmp_path / "categories.txt"
    raw.write_text("/c/cat 0\n/d/dog/indoor 1\n", encoding="utf-8")
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    cfg = tiny_config(tmp_path / "imgs")
    cfg["models"]["tiny"]["ground_truth"] = {"url": raw.as_uri(), "sha256": digest, "clean": "places365"}
    from sieve.prefetch import prefetch

    prefetch(cfg, tmp_path / "resources/concepts")  # as on a login node; the jobs then run offline
    run_snakemake(tmp_path, cfg, targets=("resources/ground_truth/tiny/classes.txt",))
    assert (tmp_path / "resources/ground_truth/tiny/classes.txt").read_text() == "cat\ndog/indoor\n"
    assert (tmp_path / f"resources/ground_truth/{digest}.txt").read_bytes() == raw.read_bytes()


# ------------------------------------------------------------------------------------------ best verified neurons
def _neuron_concepts(path: Path, rows: list[tuple[int, str, float, int, float]]) -> str:
    """A neuron_concepts.csv of (neuron, status, best_ar, n_verified, ratio) rows."""
    cols = ["neuron", "status", "n_hypotheses", "n_verified", "best_concept", "best_ar", "ratio"]
    write_csv(
        path,
        cols,
        [[n, st, 2, nv, f"c{n}" if st == "verified" else "", ar, ratio] for n, st, ar, nv, ratio in rows],
    )
    return str(path)


def test_best_verified_neurons_rank_by_ar_then_verified_count_then_ratio(tmp_path, caplog) -> None:
    csv_path = _neuron_concepts(
        tmp_path / "nc.csv",
        [
            (0, "verified", 0.8, 1, 30.0),
            (1, "verified", 1.0, 1, 12.0),
            (2, "unverified", 1.0, 2, 99.0),  # never verified: never zeroed, whatever its figures
            (3, "verified", 1.0, 2, 11.0),  # ties 1 and 5 on AR, more verified hypotheses
            (4, "not_selected", 0.0, 0, 2.0),
            (5, "verified", 1.0, 1, 15.0),  # ties 1 on AR and count, higher ratio
            (6, "verified", 0.8, 1, 30.0),  # ties 0 on everything: the lower id first
        ],
    )
    assert best_verified_neurons(csv_path, 1) == [3]
    assert best_verified_neurons(csv_path, 5) == [3, 5, 1, 0, 6]
    with caplog.at_level("WARNING"):
        assert best_verified_neurons(csv_path, 9) == [3, 5, 1, 0, 6]
    assert "only 5 neurons are verified" in caplog.text
    none = _neuron_concepts(
        tmp_path / "none.csv", [(0, "unverified", 1.0, 0, 20.0), (1, "dead", 0.0, 0, 0.0)]
    )
    with pytest.raises(
        EvaluateError, match=r"none\.csv: no neuron is verified.*ablate_neurons\.m: best_verified"
    ):
        best_verified_neurons(none, 1, "m")


@pytest.mark.workflow
def test_best_verified_ablation_waits_for_the_runs_verified_neurons(tmp_path) -> None:
    """{best_verified: N} makes the ablation job read the run's neuron_concepts.csv (so Verify runs first); the
    list form does not; a missing or unknown concept set stops the parse naming the key."""
    target = ("results/synthetic/synthetic/ablation",)

    def planned(ablate, **extra) -> dict[str, int]:
        cfg = {**SMALL_SYNTHETIC, **extra, "evaluate": {"ablate_neurons": {"synthetic": ablate}}}
        return dict(jobs_run(run_snakemake(tmp_path / "run", cfg, targets=target, extra=("-n",))))

    assert planned({"best_verified": 1})["activation_rate"] == 1
    assert "activation_rate" not in planned([0, 2])
    sets = {"a": {"synthetic": "default"}, "b": {"synthetic": "default"}}
    assert planned({"best_verified": 1, "concept_set": "b"}, concept_sets=sets)["activation_rate"] == 1
    for ablate, message in (
        (
            {"best_verified": 1},
            "config key evaluate.ablate_neurons.synthetic: best_verified needs concept_set: one of a, b",
        ),
        (
            {"best_verified": 1, "concept_set": "c"},
            "config key evaluate.ablate_neurons.synthetic.concept_set: no concept set 'c' in concept_sets: (a, b)",
        ),
    ):
        cfg = {**SMALL_SYNTHETIC, "concept_sets": sets, "evaluate": {"ablate_neurons": {"synthetic": ablate}}}
        proc = run_snakemake(tmp_path / "bad", cfg, targets=target, extra=("-n",), check=False)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr
