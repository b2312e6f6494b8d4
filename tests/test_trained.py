"""The trained world: its spec, pictures, class-name file, and a short deterministic training run whose
checkpoint loads back through the workflow's ``source: torchvision`` loader (a tiny world: 32 px pictures,
a few steps; the default models' figures are bench/trained_select.py's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sieve.backends import BackendError
from sieve.backends.models import load_model
from sieve.io import stable_hash
from sieve.synthetic.world import load_world
from sieve.trained import (
    TrainedSpecError,
    TrainingFailed,
    class_names,
    load_trained_world,
    model_spec,
    render_picture,
    render_split,
    run_train,
    train_model,
    write_class_names,
)
from sieve.trained.train import build_model, training_params

TINY_WORLD = {"image_size": 32, "sizes": [7, 9], "generated_size": 11, "neurons": [{"kind": "dead"}]}
TINY = {
    "pictures": {"main_sizes": [11, 13], "clutter": 2, "clutter_sizes": [5, 7], "train": 46, "test": 23},
    "training": {"min_accuracy": 0.0},
    "models": {
        "resnet": {
            "arch": "ResNet",
            "kwargs": {"block": "BasicBlock", "layers": [1, 1, 1, 1]},
            "steps": 3,
            "batch_size": 8,
            "lr": 0.001,
        },
        "vit": {
            "arch": "VisionTransformer",
            "steps": 3,
            "batch_size": 8,
            "lr": 0.001,
            "kwargs": {"patch_size": 8, "num_layers": 1, "num_heads": 2, "hidden_dim": 16, "mlp_dim": 32},
        },
    },
}


@pytest.fixture(scope="module")
def tiny():
    return load_trained_world(TINY, world=load_world(TINY_WORLD))


def test_default_spec_names_the_world_classes_and_two_torchvision_models() -> None:
    tw = load_trained_world("default")
    assert tw.world_spec == "default" and tw.world.image_size == 64
    assert (
        tw.n_classes == 23
        and tw.classes[0] == "red circle"
        and tw.classes[-3:] == ("stripes", "dots", "checkerboard")
    )
    assert {n: m.arch for n, m in tw.models.items()} == {"resnet": "ResNet", "vit": "VisionTransformer"}
    assert tw.model_kwargs("vit")["image_size"] == 64
    assert min(tw.main_sizes) > max(tw.clutter_sizes)
    params = training_params(tw, "vit")  # the training rule's params: what retrains when it changes
    assert stable_hash(params) == stable_hash(training_params(load_trained_world("default"), "vit"))
    assert (
        params["model"]["kwargs"]["image_size"] == 64
        and params["settings"]["steps"] == tw.models["vit"].steps
    )
    assert params["world"]["image_size"] == 64 and params["classes"] == list(tw.classes)


def test_spec_errors_name_the_key(tmp_path) -> None:
    w = load_world(TINY_WORLD)
    cases = [
        ({"epochs": 3}, "unknown key"),
        (
            {"pictures": {**TINY["pictures"], "clutter_sizes": [11]}},
            "pictures.clutter_sizes: every clutter size must be smaller",
        ),
        ({"pictures": {"trian": 4}}, "pictures.trian: unknown key"),
        ({"classes": ["red circle", "pink heart"]}, "classes: 'pink heart' is not a colour x shape"),
        (
            {"models": {"r": {"arch": "resnet18", "steps": 1, "batch_size": 1, "lr": 0.1}}},
            "models.r.arch: must be one of torchvision's classes",
        ),
        (
            {"models": {"r": {"arch": "ResNet", "steps": 0, "batch_size": 1, "lr": 0.1}}},
            r"models.r.steps: must be an integer >= 1, got 0",
        ),
        (
            {
                "models": {
                    "v": {
                        "arch": "VisionTransformer",
                        "kwargs": {"image_size": 32},
                        "steps": 1,
                        "batch_size": 1,
                        "lr": 0.1,
                    }
                }
            },
            "models.v.kwargs: must be a mapping without",
        ),
    ]
    for raw, msg in cases:
        with pytest.raises(TrainedSpecError, match=msg):
            load_trained_world({**TINY, **raw}, world=w)
    with pytest.raises(TrainedSpecError, match="trained world spec not found: .*nope.yaml"):
        load_trained_world(tmp_path / "nope.yaml")


def test_pictures_are_deterministic_balanced_and_named_by_their_main_object(tiny) -> None:
    a, objs = render_picture(tiny, "train", 5)
    b, _ = render_picture(tiny, "train", 5)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, render_picture(tiny, "test", 5)[0])  # the held-out split is another stream
    n = 4 * tiny.n_classes
    for i in range(n):
        _, objs = render_picture(tiny, "train", i)
        main = objs[0]
        assert main["main"] and main["concept"] == tiny.classes[i % tiny.n_classes]
        assert main["box"][2] in tiny.main_sizes
        clutter = objs[1:]
        assert len(clutter) <= tiny.clutter and all(o["box"][2] in tiny.clutter_sizes for o in clutter)
        keys = [
            o["concept"] if o["concept"] in tiny.world.textures else o["concept"].split()[0] for o in objs
        ]
        assert len(set(keys)) == len(keys)  # distinct colours and textures, as in the probe scenes
    _, pre = build_model(tiny, "resnet")
    images, labels = render_split(tiny, "train", pre, n)
    assert images.shape == (n, 3, 32, 32) and images.dtype == torch.uint8
    assert np.bincount(labels.numpy()).tolist() == [4] * tiny.n_classes


def test_class_names_file_has_the_imagenet_labels_format(tiny, tmp_path) -> None:
    path = tmp_path / "classes.txt"
    write_class_names(tiny, path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert text.endswith("\n") and lines[-1] == "" and len(lines) - 1 == tiny.n_classes
    assert lines[:-1] == class_names(tiny)
    assert lines[0] == "red circle"
    assert lines[tiny.classes.index("stripes")] == "stripes, stripe, striped"
    assert lines[tiny.classes.index("checkerboard")].startswith("checkerboard, checkered, ")
    for line in lines[:-1]:
        names = line.split(", ")
        assert line.strip() == line and all(n and n == n.strip() and "," not in n for n in names)


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "penultimate", "final", "width"),
    [("resnet", "layer4", "fc", 512), ("vit", "encoder.ln", "heads.head", 16)],
)
def test_short_training_is_deterministic_and_reloads_through_the_loader(
    tiny, tmp_path, name, penultimate, final, width
) -> None:
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    net, result = train_model(tiny, name, threads=1, progress=False)
    again, _ = train_model(tiny, name, threads=1, progress=False)
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (
        threads,
        det,
    )  # restored
    first = _state(net)
    assert first.keys() == again.state_dict().keys()
    for k, v in again.state_dict().items():
        assert torch.equal(first[k], v), k  # same seed -> identical weights
    assert result.steps == 3 and result.images_seen == 24 and 0.0 <= result.accuracy <= 1.0
    assert len(result.recall) == tiny.n_classes and result.threads == 1
    ckpt = tmp_path / f"{name}.pt"
    from sieve.trained.train import save_checkpoint

    save_checkpoint(net, ckpt)
    pen = load_model(name, model_spec(tiny, name, weights=str(ckpt)))
    fin = load_model(name, model_spec(tiny, name, weights=str(ckpt), layer=final))
    assert pen.layer == penultimate and pen.n_neurons == width
    assert fin.layer == final and fin.n_neurons == tiny.n_classes
    x = pen.preprocess.normalize(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    logits, _ = fin.activations(x)
    with torch.no_grad():
        torch.testing.assert_close(logits, net.eval()(x))  # the loaded checkpoint is the trained model


def test_accuracy_floor_stops_the_run_with_the_figure(tiny) -> None:
    strict = load_trained_world(
        {**TINY, "models": {"resnet": {**TINY["models"]["resnet"], "steps": 1, "min_accuracy": 1.0}}},
        world=tiny.world,
    )
    with pytest.raises(
        TrainingFailed, match=r"'resnet': held-out accuracy 0\.\d{3} is under the floor 1\.000"
    ) as e:
        train_model(strict, "resnet", threads=1, progress=False)
    assert e.value.accuracy < 1.0 and e.value.floor == 1.0


def test_run_train_writes_checkpoint_and_metrics_from_a_spec_file(tmp_path, capsys) -> None:
    (tmp_path / "world.yaml").write_text(yaml.safe_dump(TINY_WORLD))
    spec = tmp_path / "trained.yaml"
    spec.write_text(
        yaml.safe_dump(
            {**TINY, "world": "world.yaml", "models": {"vit": {**TINY["models"]["vit"], "steps": 2}}}
        )
    )
    ckpt, metrics = tmp_path / "out" / "vit.pt", tmp_path / "out" / "vit.json"
    result = run_train(str(spec), "vit", str(ckpt), str(metrics), threads=1)
    import json

    saved = json.loads(metrics.read_text())
    assert saved["accuracy"] == result.accuracy and saved["steps"] == 2
    assert saved["penultimate"] == "encoder.ln" and saved["final"] == "heads.head"
    assert saved["model_spec"]["weights"] == str(ckpt) and saved["model_spec"]["kwargs"]["image_size"] == 32
    assert "train vit" in capsys.readouterr().err  # the progress bar goes to stderr (the rule's log)
    assert load_model("v", saved["model_spec"]).layer == "encoder.ln"
    with pytest.raises(KeyError, match="has no model 'resnet'"):
        run_train(str(spec), "resnet", str(ckpt), str(metrics))


def test_loader_builds_torchvision_classes_and_names_bad_kwargs() -> None:
    with pytest.raises(BackendError, match="kwargs.block must be one of BasicBlock, Bottleneck"):
        load_model(
            "m", {"source": "torchvision", "arch": "ResNet", "kwargs": {"block": "Basic", "layers": [1]}}
        )
    with pytest.raises(BackendError, match="arch 'VisionTransformer': cannot build it from kwargs"):
        load_model("m", {"source": "torchvision", "arch": "VisionTransformer", "kwargs": {"patch_size": 8}})
    m = load_model("m", {"source": "torchvision", "arch": "resnet18", "kwargs": {"zero_init_residual": True}})
    assert m.layer == "layer4"
    assert Path(load_trained_world().source).name == "default.yaml"
