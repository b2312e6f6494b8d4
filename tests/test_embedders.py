"""Embedders: open_clip through one loader (custom arch config + local weights), python factories, errors."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from sieve.backends import BackendError
from sieve.backends.embedders import Embedder, load_embedder
from tinyclip import TINY_CONFIG, make_tiny_clip


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory):
    return make_tiny_clip(tmp_path_factory.mktemp("clip"))


def test_open_clip_custom_arch_loads_saved_weights(tiny_spec, tmp_path):
    emb = load_embedder(tiny_spec, "cpu")
    assert isinstance(emb, Embedder)
    assert emb.dim == TINY_CONFIG["embed_dim"] and emb.image_size == 32
    # the weights in the file are the ones used: same outputs as open_clip's model with that state dict
    ref = open_clip.create_model(tiny_spec["arch"], pretrained=None)
    ref.load_state_dict(torch.load(tiny_spec["pretrained"], weights_only=True))
    ref.eval()
    x = torch.rand(3, 3, 32, 32)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want = torch.nn.functional.normalize(ref.encode_image((x - mean) / std), dim=-1)
        want_t = torch.nn.functional.normalize(
            ref.encode_text(open_clip.get_tokenizer(tiny_spec["arch"])(["a dog"])), dim=-1
        )
    torch.testing.assert_close(emb.encode_images(x), want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(emb.encode_text(["a dog"]), want_t, atol=1e-5, rtol=1e-4)
    # other seeds give other weights, hence other embeddings
    other = load_embedder(make_tiny_clip(tmp_path / "other", seed=1), "cpu")
    assert not torch.allclose(other.encode_text(["a dog"]), emb.encode_text(["a dog"]))


def test_open_clip_any_image_size_and_hostile_text(tiny_spec):
    emb = load_embedder(tiny_spec, "cpu")
    z = emb.encode_images(torch.rand(2, 3, 20, 45))
    assert z.shape == (2, 16) and z.dtype == torch.float32
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    texts = ["$(rm -rf ~)", "../../etc/passwd", "ünïcödé 你好 \"quoted\" 'single'", "long " * 2000, ""]
    t = emb.encode_text(texts)
    assert t.shape == (5, 16) and torch.isfinite(t).all()
    torch.testing.assert_close(t.norm(dim=1), torch.ones(5))


def test_model_config_is_registered_under_arch_name(tmp_path):
    cfg = tmp_path / "whatever_file_name.json"
    cfg.write_text(json.dumps(TINY_CONFIG))
    emb = load_embedder(
        {"source": "open_clip", "arch": "my-private-clip", "model_config": str(cfg), "pretrained": None},
        "cpu",
    )
    assert "my-private-clip" in open_clip.list_models()
    assert emb.dim == 16


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model_config": "/nonexistent/arch.json"}, "model_config: file not found"),
        ({"pretrained": "/nonexistent/weights.pt"}, "checkpoint file not found"),
        ({"pretrained": "not-a-tag"}, "neither a pretrained tag"),
    ],
)
def test_open_clip_errors(tiny_spec, change, message):
    with pytest.raises(BackendError, match=message):
        load_embedder({**tiny_spec, **change}, "cpu")


def test_open_clip_bad_config_and_checkpoint(tiny_spec, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BackendError, match="not valid JSON"):
        load_embedder({**tiny_spec, "model_config": str(bad)}, "cpu")
    bad.write_text(json.dumps({"embed_dim": 4}))
    with pytest.raises(BackendError, match="missing"):
        load_embedder({**tiny_spec, "model_config": str(bad)}, "cpu")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, wrong)
    with pytest.raises(BackendError, match="wrong.pt"):
        load_embedder({**tiny_spec, "pretrained": str(wrong)}, "cpu")
    with pytest.raises(BackendError, match="not an open_clip architecture"):
        load_embedder({"source": "open_clip", "arch": "ViT-Nope-99", "pretrained": None}, "cpu")


def test_offline_tag_fails_at_once(monkeypatch, tmp_path):
    monkeypatch.setenv("SIEVE_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(BackendError, match="prefetch"):
        load_embedder({"source": "open_clip", "arch": "ViT-B-16", "pretrained": "openai"}, "cpu")


def test_python_embedder_factory():
    emb = load_embedder({"source": "python", "factory": "tinyclip:projection_embedder", "kwargs": {"dim": 8}})
    assert emb.dim == 8 and emb.encode_images(torch.rand(2, 3, 10, 10)).shape == (2, 8)
    torch.testing.assert_close(emb.encode_text(["a", "b"]).norm(dim=1), torch.ones(2))
    with pytest.raises(BackendError, match="without"):
        load_embedder({"source": "python", "factory": "tinyclip:not_an_embedder"})
    with pytest.raises(BackendError, match="needs 'factory"):
        load_embedder({"source": "python"})
