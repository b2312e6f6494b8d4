"""The planted-concept world, unit by unit: spec, renderer, model responses, embedder geometry, generator,
probe set and the truth evaluation. Each runs in seconds on a CPU; the end-to-end run is tests/test_demo.py."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sieve.backends import BackendError
from sieve.backends.embedders import load_embedder
from sieve.backends.generators import load_generator
from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.evaluate.stage_ablations import run_stage_ablations
from sieve.evaluate.truth import is_right, run_truth
from sieve.select import select_neurons, selectivity
from sieve.synthetic import concept_list, load_world, planted_truth, scene_truth
from sieve.synthetic.world import SpecError, render_prompt, render_scene

WORLD = load_world()


@pytest.fixture(scope="module")
def model():
    return load_model("synthetic", {"source": "synthetic", "layer": "penultimate"})


@pytest.fixture(scope="module")
def embedder():
    return load_embedder({"source": "synthetic"})


@pytest.fixture(scope="module")
def generator():
    return load_generator({"source": "synthetic"})


def _images(world, prompts, seed=0):
    arr = np.stack([render_prompt(world, p, seed)[0] for p in prompts])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255


def _pooled(model, x):
    pooled, _ = model.activations(model.preprocess.normalize(x))
    return pooled.numpy()


# ------------------------------------------------------------------------------------------------ spec


def test_concept_list_has_objects_attributes_textures_and_distractors():
    concepts = concept_list("default")
    assert concepts == concept_list(None)
    assert len(concepts) == len(set(concepts))
    for c in WORLD.colours:
        assert c in concepts
        for s in WORLD.shapes:
            assert f"{c} {s}" in concepts
    for t in WORLD.textures:
        assert t in concepts
    assert "dog" in concepts and "orange heart" in concepts
    for n in WORLD.neurons:
        assert all(c in concepts for c in n.concepts)
    kinds = {row["kind"] for row in planted_truth()}
    assert kinds == {"detector", "polysemantic", "attribute", "redundant", "dead"}


@pytest.mark.parametrize(
    "change, key",
    [
        ({"shapes": ["circle", "hexagon"]}, "shapes"),
        ({"neurons": [{"kind": "polysemantic", "concepts": ["red circle"]}]}, "neurons[0].concepts"),
        ({"neurons": [{"kind": "detector", "concept": "pink circle"}]}, "neurons[0].concept"),
        ({"neurons": [{"kind": "attribute", "concept": "circle"}]}, "neurons[0].concept"),
        ({"neurons": [{"kind": "sleepy"}]}, "neurons[0]"),
        ({"colours": {"red": [0.9, 0.1, 0.1], "crimson": [0.85, 0.1, 0.15]}}, "colours.crimson"),
        ({"sizes": [12, 17]}, "sizes"),
        ({"generated_size": 15}, "generated_size"),
        ({"colour": {"red": [1, 0, 0]}}, "colour"),
    ],
)
def test_bad_spec_names_file_and_key(tmp_path, change, key):
    path = tmp_path / "world.yaml"
    path.write_text(yaml.safe_dump(change, sort_keys=False))
    with pytest.raises(SpecError) as err:
        load_world(str(path))
    assert str(path) in str(err.value) and key in str(err.value)


def test_missing_spec_is_a_backend_error_naming_the_file(tmp_path):
    with pytest.raises(BackendError, match="nowhere.yaml"):
        load_model("m", {"source": "synthetic", "spec": str(tmp_path / "nowhere.yaml")})


# -------------------------------------------------------------------------------------------- renderer


def test_scenes_are_deterministic_and_hold_their_ground_truth():
    a, objs = render_scene(WORLD, 0, 7)
    b, objs_b = render_scene(WORLD, 0, 7)
    assert np.array_equal(a, b) and objs == objs_b
    assert not np.array_equal(a, render_scene(WORLD, 1, 7)[0])
    counts = set()
    for i in range(60):
        img, objs = render_scene(WORLD, 0, i)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        counts.add(len(objs))
        colours = [o["colour"] for o in objs if not o["texture"]]
        assert len(colours) == len(set(colours))
        boxes = [o["box"] for o in objs]
        for t, left, s in boxes:
            assert 0 <= t and t + s <= 64 and 0 <= left and left + s <= 64 and s in WORLD.sizes
        for i1 in range(len(boxes)):
            for i2 in range(i1 + 1, len(boxes)):
                (t1, l1, s1), (t2, l2, s2) = boxes[i1], boxes[i2]
                assert t1 + s1 <= t2 or t2 + s2 <= t1 or l1 + s1 <= l2 or l2 + s2 <= l1
        # the object's colour is really there, at its box centre
        for o in objs:
            if not o["texture"]:
                t, left, s = o["box"]
                px = img[t + s // 2, left + s // 2] / 255
                assert np.abs(px - np.array(WORLD.colours[o["colour"]])).sum() < 0.25
    assert counts == {0, 1, 2, 3}
    assert scene_truth("default", 0, 7) == render_scene(WORLD, 0, 7)[1]


def test_prompts_draw_their_concept_and_unknown_words_draw_nothing():
    img, drawn = render_prompt(WORLD, "red circle", 3)
    assert drawn["colour"] == "red" and drawn["shape"] == "circle" and drawn["box"][2] == WORLD.generated_size
    assert np.array_equal(img, render_prompt(WORLD, "red circle", 3)[0])
    assert not np.array_equal(img, render_prompt(WORLD, "red circle", 4)[0])
    assert render_prompt(WORLD, "a photo of a striped square", 0)[1]["texture"] == "stripes"
    for prompt in ["dog", "", "’quotes’ $(rm -rf ~) ../../etc", "orange heart", "x" * 500]:
        img, drawn = render_prompt(WORLD, prompt, 0)
        assert drawn["box"] is None
        sat = img.max(-1).astype(int) - img.min(-1)
        assert sat.max() < 0.25 * 255  # grey background and noise only


# ------------------------------------------------------------------------------------------------- model


def test_model_loads_through_the_common_loader(model):
    assert model.layer == "neurons"
    assert model.n_neurons == len(WORLD.neurons)
    assert model.map_size == (16, 16)
    assert model.preprocess.input_size == 64


def test_each_planted_neuron_fires_on_its_concepts_only(model):
    objects = WORLD.object_concepts + ["dog"]
    acts = _pooled(model, _images(WORLD, objects))
    for n in WORLD.neurons:
        col = acts[:, n.index]
        if n.kind in ("detector", "polysemantic"):
            on = [i for i, c in enumerate(objects) if c in n.concepts]
            off = [i for i, c in enumerate(objects) if c not in n.concepts]
            assert col[on].min() > 0.15, (n, col[on])
            assert col[off].max() < 0.02 * col[on].min() + 1e-6, (n, [objects[i] for i in off if col[i] > 0])
        elif n.kind == "attribute":
            on = [i for i, c in enumerate(objects) if c.split(" ")[0] == n.concepts[0]]
            off = [i for i, c in enumerate(objects) if i not in on]
            assert len(on) == len(WORLD.shapes) and col[on].min() > 0.15
            assert col[off].max() < 1e-6
        elif n.kind == "redundant":
            assert col.min() > 0.2 and col.max() / col.min() < 1.3
        else:
            assert np.all(col == 0)


def test_neuron_maps_light_up_the_object(model):
    img, drawn = render_prompt(WORLD, "blue square", 1)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    _, maps = model.activations(model.preprocess.normalize(x))
    n = next(n.index for n in WORLD.neurons if n.concepts == ("blue square",))
    m = maps[0, n].numpy()
    top, left, size = drawn["box"]
    peak = np.unravel_index(np.argmax(m), m.shape)
    assert top // 4 <= peak[0] <= (top + size) // 4 and left // 4 <= peak[1] <= (left + size) // 4
    assert m[m > 0.5 * m.max()].size >= (size // 4) ** 2 * 0.6  # the whole box, not one pixel


def test_pooled_activations_are_exact_whatever_the_order_of_additions(model):
    """The analysed layer's maps sit on a grid of MAP_STEP, so every pooled mean is an exact float32 sum: the
    same value in any summation order (another CPU's vector width), and ties between scenes are true ties (a
    CI machine without AVX-512 once ranked the top images of tied scenes differently, and the run changed)."""
    from sieve.synthetic.model import MAP_STEP

    scenes = np.stack([render_scene(WORLD, 0, i)[0] for i in range(48)])
    x = torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 255
    pooled, maps = model.activations(model.preprocess.normalize(x))
    steps = maps.double() / MAP_STEP
    assert torch.equal(steps, steps.round()), "maps off the MAP_STEP grid"
    assert maps.flatten(2).sum(2).double().max() * 2 / MAP_STEP < 2**24  # sums stay exact in float32
    flat = maps.flatten(2)
    forward = flat.sum(2) / flat.shape[2]
    backward = flat.flip(2).cumsum(2)[..., -1] / flat.shape[2]  # another order of the same additions
    exact = flat.double().sum(2) / flat.shape[2]
    assert torch.equal(pooled, forward) and torch.equal(forward, backward)
    assert torch.equal(pooled.double(), exact)
    assert len(np.unique(pooled.numpy()[:, 0])) < len(scenes)  # the world has ties, and they stay ties


def test_select_keeps_planted_neurons_and_rejects_redundant_and_dead(model):
    probe = open_image_set("synthetic", {"kind": "synthetic", "n_images": 160, "seed": 0})
    x = (
        torch.from_numpy(np.stack([np.asarray(probe.load(i)) for i in range(len(probe))])).permute(0, 3, 1, 2)
        / 255
    )
    acts = np.concatenate([_pooled(model, x[i : i + 40]) for i in range(0, len(x), 40)])
    stats = selectivity(acts)
    kept = select_neurons(stats, tau=10.0)
    for n in WORLD.neurons:
        assert kept[n.index] == (n.kind in ("detector", "polysemantic", "attribute")), (
            n,
            stats["ratio"][n.index],
        )
    # a generated picture of a planted concept beats the neuron's top-1% probe threshold
    for n in WORLD.neurons:
        if n.kind != "detector":
            continue
        gen = _pooled(model, _images(WORLD, [n.concepts[0]] * 4))[:, n.index]
        assert (gen > stats["threshold"][n.index]).all()


def test_user_spec_builds_the_neurons_it_names(tmp_path):
    spec = tmp_path / "mine.yaml"
    spec.write_text(
        yaml.safe_dump(
            sort_keys=False,
            data={
                "colours": {"red": [0.9, 0.1, 0.1], "blue": [0.1, 0.2, 0.9]},
                "shapes": ["circle", "triangle"],
                "textures": ["dots"],
                "distractors": ["zebra"],
                "neurons": [
                    {"kind": "detector", "concept": "blue triangle"},
                    {"kind": "polysemantic", "concepts": ["red circle", "dots"]},
                    {"kind": "dead"},
                ],
            },
        )
    )
    m = load_model("mine", {"source": "synthetic", "spec": str(spec)})
    assert m.n_neurons == 3
    world = load_world(str(spec))
    assert concept_list(str(spec)) == [
        "red circle",
        "red triangle",
        "blue circle",
        "blue triangle",
        "red",
        "blue",
        "circle",
        "triangle",
        "dots",
        "zebra",
    ]
    acts = _pooled(m, _images(world, ["blue triangle", "red circle", "dots", "red triangle", "zebra"]))
    assert (acts[0, 0] > 0.1) and (acts[1:, 0] == 0).all()
    assert acts[1, 1] > 0.1 and acts[2, 1] > 0.1 and acts[0, 1] == 0 and acts[3, 1] == 0
    assert (acts[:, 2] == 0).all()


# ---------------------------------------------------------------------------------------------- embedder


def test_embedder_geometry(embedder):
    texts = ["red circle", "blue circle", "red square", "red", "dog", "a photo of a ☃ 'quoted' word"]
    t = embedder.encode_text(texts)
    assert t.shape == (len(texts), embedder.dim) and t.dtype == torch.float32
    assert torch.allclose(t.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    img, drawn = render_prompt(WORLD, "red circle", 5)
    top, left, size = drawn["box"]
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255
    # crops of different sizes and aspect ratios, as Hypothesize cuts them, and the whole picture
    crops = [
        x,
        x[..., max(0, top - 4) : top + size + 2, max(0, left - 9) : left + size + 1],
        x[..., top : top + size, left : left + size],
    ]
    for crop in crops:
        v = embedder.encode_images(torch.nn.functional.interpolate(crop, size=(40, 90)))
        assert abs(float(v.norm()) - 1) < 1e-5
        sims = dict(zip(texts, (v @ t.T)[0].tolist(), strict=True))
        assert sims["red circle"] > 0.95
        assert sims["red circle"] > sims["red"] > sims["blue circle"]
        assert sims["red circle"] - 0.3 > max(sims["blue circle"], sims["red square"])
        assert abs(sims["dog"]) < 0.2
    # textures and shapes keep their identity across the world
    names = WORLD.object_concepts
    v = embedder.encode_images(_images(WORLD, names, seed=2))
    best = (v @ embedder.encode_text(names).T).argmax(1).tolist()
    assert [names[i] for i in best] == names


def test_generator_contract(generator):
    out = generator.generate(["red circle", "dog", "stripes"], [0, 1, 2])
    assert out.shape == (3, 3, generator.resolution, generator.resolution)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, generator.generate(["red circle", "dog", "stripes"], [0, 1, 2]))
    assert not torch.equal(out[0], generator.generate(["red circle"], [9])[0])
    assert generator.generate([], []).shape[0] == 0


def test_probe_set(tmp_path):
    probe = open_image_set("p", {"kind": "synthetic", "n_images": 12, "seed": 3})
    assert len(probe) == 12 and probe.paths[0] == "scene_00000.png"
    img = probe.load(4)
    assert img.size == (64, 64) and img.mode == "RGB"
    assert np.array_equal(np.asarray(img), render_scene(WORLD, 3, 4)[0])
    assert probe.labels[4] == len(render_scene(WORLD, 3, 4)[1])


# ------------------------------------------------------------------------------------------------- truth


def test_right_and_wrong_hypotheses():
    assert is_right(WORLD, "red circle", ["red circle"])
    assert not is_right(WORLD, "red", ["red circle"])
    assert not is_right(WORLD, "blue circle", ["red circle"])
    assert is_right(WORLD, "red star", ["red"]) and is_right(WORLD, "red", ["red"])
    assert is_right(WORLD, "dots", ["green circle", "dots"])
    assert not is_right(WORLD, "dog", ["red"]) and not is_right(WORLD, "dog", [])


def _write_csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def _fake_run(
    tmp_path: Path, verified: dict[int, list[str]], hyps: list[tuple[int, str, float, int]]
) -> dict:
    n = len(WORLD.neurons)
    planted = {x.index for x in WORLD.neurons if x.kind in ("detector", "polysemantic", "attribute")}
    sel = {"n_neurons": n, "neurons": {str(i): {"selected": i in planted, "dead": False} for i in range(n)}}
    (tmp_path / "select.json").write_text(json.dumps(sel))
    nc = [
        {
            "neuron": i,
            "status": "verified" if verified.get(i) else "unverified",
            "concepts": json.dumps(verified.get(i, [])),
            "best_concept": "",
            "best_ar": "",
        }
        for i in range(n)
    ]
    ar = [{"neuron": i, "cluster": 0, "concept": c, "ar": a, "kept": k} for i, c, a, k in hyps]
    (tmp_path / "vs.json").write_text(
        json.dumps(
            {
                "mean_ar_initial": 0.5,
                "mean_ar_kept": 0.9,
                "n_hypotheses": len(ar),
                "n_kept": sum(h[3] for h in hyps),
                "verify_enabled": True,
            }
        )
    )
    return {
        "select": str(tmp_path / "select.json"),
        "neuron_concepts": _write_csv(tmp_path / "nc.csv", nc),
        "ar": _write_csv(tmp_path / "ar.csv", ar),
        "verify_summary": str(tmp_path / "vs.json"),
    }


def test_truth_outputs(tmp_path):
    truth = {x.index: list(x.concepts) for x in WORLD.neurons}
    verified = {i: c for i, c in truth.items() if c}
    poly = next(x.index for x in WORLD.neurons if x.kind == "polysemantic")
    verified[poly] = verified[poly][:1]  # one of the two concepts missed
    hyps = [(0, "red circle", 1.0, 1), (0, "red", 0.3, 0), (0, "dog", 0.0, 0)]
    p = _fake_run(tmp_path, verified, hyps)
    s = run_truth(
        "default",
        p["select"],
        p["neuron_concepts"],
        p["ar"],
        p["verify_summary"],
        str(tmp_path / "truth.csv"),
        str(tmp_path / "truth_summary.json"),
    )
    n_concepts = sum(len(c) for c in truth.values())
    assert s["n_planted_concepts"] == n_concepts and s["n_recovered_concepts"] == n_concepts - 1
    assert s["recovery"] == pytest.approx((n_concepts - 1) / n_concepts)
    assert s["select_correct"] is True
    assert s["kinds"]["polysemantic"]["recovered"] == sum(x.kind == "polysemantic" for x in WORLD.neurons) - 1
    assert s["kinds"]["dead"]["selected_share"] == 0 and s["kinds"]["dead"]["recovered_share"] is None
    assert s["hypotheses"]["n_wrong"] == 2 and s["hypotheses"]["mean_ar_wrong"] == pytest.approx(0.15)
    assert s["mean_ar_initial"] == 0.5 and s["mean_ar_kept"] == 0.9
    rows = list(csv.DictReader(open(tmp_path / "truth.csv")))
    assert [r["recovered"] for r in rows][poly] == "false" and rows[0]["recovered"] == "true"
    assert json.loads(rows[poly]["planted_concepts"]) == truth[poly]
    assert rows[0]["n_wrong_hypotheses"] == "2"
    assert json.loads((tmp_path / "truth_summary.json").read_text())["recovery"] == s["recovery"]
    # the ablation table reads the same four files per variant
    out = run_stage_ablations({"full": p, "no_verify": p}, str(tmp_path / "ablations.json"), spec="default")
    assert [r["variant"] for r in out["variants"]] == ["full", "no_verify"]
    assert out["variants"][0]["mean_ar"] == 0.9 and out["variants"][1]["mean_ar"] == 0.5
    assert out["variants"][0]["recovery"] == s["recovery"]


def test_truth_refuses_a_layer_that_is_not_the_spec(tmp_path):
    p = _fake_run(tmp_path, {}, [(0, "red", 0.1, 0)])
    sel = json.loads(Path(p["select"]).read_text())
    sel["n_neurons"] = 3
    Path(p["select"]).write_text(json.dumps(sel))
    with pytest.raises(ValueError, match="3 neurons"):
        run_truth(
            "default",
            p["select"],
            p["neuron_concepts"],
            p["ar"],
            p["verify_summary"],
            str(tmp_path / "t.csv"),
            str(tmp_path / "t.json"),
        )


def test_world_and_backends_import_without_each_other():
    """No import circle: the registries reach the world's backends through sieve.backends.PLUGINS, on first
    use; the world (truth, concept lists) imports no backend and no torch."""
    code = "\n".join(
        [
            "import sys",
            "import sieve.synthetic",
            "assert 'torch' not in sys.modules and 'sieve.backends' not in sys.modules, sorted(sys.modules)",
            "from sieve.backends.models import MODELS",
            "from sieve.backends.imagesets import IMAGE_SETS",
            "assert 'sieve.synthetic.backends' not in sys.modules",
            "assert 'synthetic' in MODELS.names() and 'synthetic' in IMAGE_SETS.names()",
            "model, pre = MODELS.get('synthetic')({'source': 'synthetic'})",
            "assert 'sieve.synthetic.backends' in sys.modules and pre.input_size > 0",
        ]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=False)


def test_plugin_table_names_an_importable_function_for_every_kind():
    from sieve.backends import PLUGINS, Registry

    for kind, table in PLUGINS.items():
        reg = Registry(kind)
        for name in table:
            assert callable(reg.get(name))
    with pytest.raises(BackendError, match=r"unknown model source 'nope' \(known: synthetic\)"):
        Registry("model").get("nope")
