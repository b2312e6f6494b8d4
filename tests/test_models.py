"""Every model source loads through ``load_model`` from a tiny checkpoint the test saves itself."""

from __future__ import annotations

import sys

import pytest
import torch
import torchvision

from sieve.backends import BackendError
from sieve.backends.models import load_model, resolve_layer


def _x(model, n: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    s = model.preprocess.input_size
    return torch.rand(n, 3, s, s, generator=g)


def test_torchvision_resnet_state_dict(tmp_path) -> None:
    ref = torchvision.models.resnet18(num_classes=10)
    ckpt = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), ckpt)
    m = load_model(
        "r18", {"source": "torchvision", "arch": "resnet18", "weights": str(ckpt), "num_classes": 10}
    )
    assert m.layer == "layer4" and m.n_neurons == 512 and m.map_size == (7, 7)
    x = m.preprocess.normalize(_x(m))
    pooled, maps = m.activations(x)
    ref.eval()
    with torch.no_grad():
        feats = torch.nn.Sequential(*list(ref.children())[:-1])(x).flatten(1)  # what avgpool gives
    torch.testing.assert_close(pooled, feats, rtol=1e-4, atol=1e-5)
    assert maps.shape == (2, 512, 7, 7)


def test_torchvision_checkpoint_that_does_not_fit(tmp_path) -> None:
    ckpt = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), ckpt)
    with pytest.raises(BackendError, match=r"does not fit arch 'resnet34'.*missing keys \['layer1\.2"):
        load_model("m", {"source": "torchvision", "arch": "resnet34", "weights": str(ckpt)})
    with pytest.raises(BackendError, match="shape mismatch at fc"):
        load_model("m", {"source": "torchvision", "arch": "resnet18", "weights": str(ckpt), "num_classes": 3})


def test_checkpoints_load_with_weights_only(tmp_path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": torch.nn.ReLU()}, evil)  # a pickled module
    with pytest.raises(BackendError, match="weights_only=True"):
        load_model("m", {"source": "torchvision", "arch": "resnet18", "weights": str(evil)})
    with pytest.raises(BackendError, match="checkpoint file not found: .*/nope.pth"):
        load_model("m", {"source": "torchvision", "arch": "resnet18", "weights": str(tmp_path / "nope.pth")})


def test_places365_pth_tar_with_module_prefix(tmp_path) -> None:
    ref = torchvision.models.resnet18(num_classes=365)
    ckpt = tmp_path / "resnet18_places365.pth.tar"
    torch.save(
        {
            "epoch": 90,
            "arch": "resnet18",
            "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()},
        },
        ckpt,
    )
    m = load_model("places", {"source": "places365", "arch": "resnet18", "weights": str(ckpt)})
    assert m.layer == "layer4" and m.n_neurons == 512
    ref.eval()
    x = _x(m, 1)
    with torch.no_grad():
        logits = ref(m.preprocess.normalize(x))
    torch.testing.assert_close(m.model(m.preprocess.normalize(x)), logits)


def test_timm_vit_and_resnet(tmp_path) -> None:
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    ckpt = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), ckpt)
    m = load_model(
        "vit", {"source": "timm", "arch": "vit_tiny_patch16_224", "weights": str(ckpt), "num_classes": 5}
    )
    assert m.layer == "norm" and m.n_neurons == 192 and m.map_size == (14, 14)
    x = _x(m, 1)
    pooled, maps = m.activations(m.preprocess.normalize(x))
    vit.eval()
    with torch.no_grad():
        tokens = vit.forward_features(m.preprocess.normalize(x))
    torch.testing.assert_close(pooled, tokens[:, 0])  # class token after the final LayerNorm
    torch.testing.assert_close(maps[0, :, 0, 1], tokens[0, 2])  # patch (0, 1) is token 2
    r = load_model("r", {"source": "timm", "arch": "resnet18", "weights": None})
    assert r.layer == "layer4" and r.map_size == (7, 7)


def test_torchvision_vit_rule() -> None:
    m = load_model("vit", {"source": "python", "factory": "tinymodels:tiny_torchvision_vit"})
    assert m.layer == "encoder.ln" and m.map_size == (2, 2) and m.n_neurons == 16


def test_generic_rule_and_clear_errors() -> None:
    mobilenet = torchvision.models.mobilenet_v3_small()
    assert resolve_layer(mobilenet, "penultimate", "mobilenet_v3_small") in {"features", "features.12"}
    with pytest.raises(
        BackendError,
        match=r"layer 'layer9' does not exist in arch 'resnet18'; valid module names include: conv1, bn1",
    ):
        load_model("m", {"source": "torchvision", "arch": "resnet18", "layer": "layer9"})
    with pytest.raises(BackendError, match="unknown torchvision arch 'resnet5000'"):
        load_model("m", {"source": "torchvision", "arch": "resnet5000"})
    with pytest.raises(BackendError, match="no penultimate-layer rule applies"):
        load_model("m", {"source": "python", "factory": "tinymodels:mlp_only"})
    with pytest.raises(BackendError, match="cannot import module 'no_such_mod'"):
        load_model("m", {"source": "python", "factory": "no_such_mod:f"})
    with pytest.raises(BackendError, match="unknown model source 'caffe'"):
        load_model("m", {"source": "caffe"})


def test_any_layer_by_name_and_final_layer() -> None:
    m = load_model("tiny", {"source": "python", "factory": "tinymodels:hotspot_cnn", "layer": "fc"})
    assert m.n_neurons == 3 and m.map_size == (1, 1)
    x = _x(m)
    pooled, _ = m.activations(m.preprocess.normalize(x))
    torch.testing.assert_close(pooled, m.model(m.preprocess.normalize(x)))


sys.modules.setdefault("tinymodels", __import__("tinymodels"))


def test_a_wrong_sieve_penultimate_is_one_clear_error() -> None:
    from sieve.backends.models import resolve_layer
    from tinymodels import HotSpotCNN

    model = HotSpotCNN(4, 0)
    model.sieve_penultimate = "layer5"
    with pytest.raises(BackendError, match="sieve_penultimate names 'layer5'.*layer4"):
        resolve_layer(model, "penultimate", "hotspot", 16)
