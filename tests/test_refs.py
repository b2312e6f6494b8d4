"""One parser decides hub id vs local file for every backend and for prefetch (sieve.backends.refs)."""

from __future__ import annotations

import os

import pytest

from sieve.backends import BackendError
from sieve.backends.refs import Ref, parse_ref


@pytest.mark.parametrize(
    ("text", "hub_ids", "kind", "value"),
    [
        # explicit prefixes, as open_clip writes them
        ("hf-hub:stabilityai/sdxl-turbo", True, "hub", "stabilityai/sdxl-turbo"),
        ("hf-hub:timm/vit_tiny", False, "hub", "timm/vit_tiny"),
        ("local-dir:pipes/sd", True, "path", "pipes/sd"),
        ("file:weights/model", False, "path", "weights/model"),
        # URLs, before the prefixes: file:// is a URL
        ("https://example.org/w.pth", False, "url", "https://example.org/w.pth"),
        ("file:///tmp/w.pth", False, "url", "file:///tmp/w.pth"),
        # by shape: what a hub id or a weights name cannot be
        ("./pipe", True, "path", "./pipe"),
        ("/abs/pipe", True, "path", "/abs/pipe"),
        ("a/b/c", True, "path", "a/b/c"),
        ("ckpt.safetensors", True, "path", "ckpt.safetensors"),
        ("resnet.pth.tar", False, "path", "resnet.pth.tar"),
        ("some/ckpt", False, "path", "some/ckpt"),
        # names: hub ids where the consumer takes them, weights names / tags where it does not
        ("stabilityai/sdxl-turbo", True, "hub", "stabilityai/sdxl-turbo"),
        ("all-mpnet-base-v2", True, "hub", "all-mpnet-base-v2"),
        ("IMAGENET1K_V1", False, "name", "IMAGENET1K_V1"),
        ("laion2b_s34b_b88k", False, "name", "laion2b_s34b_b88k"),
    ],
)
def test_parse_ref_by_prefix_and_by_shape(text, hub_ids, kind, value):
    ref = parse_ref(text, hub_ids=hub_ids)
    assert (ref.kind, ref.value, ref.raw) == (kind, value, text)
    assert ref.explicit == (text.startswith(("hf-hub:", "local-dir:", "file:")) and "://" not in text)


def test_existing_path_is_local_whatever_its_shape(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "name").mkdir()
    assert parse_ref("owner/name", hub_ids=True).kind == "path"  # a folder that exists beats a hub id
    assert parse_ref("elsewhere/name", hub_ids=True).kind == "hub"


def test_home_is_expanded_and_prefix_says_dir_or_file(tmp_path):
    ref = parse_ref("~/pipe")
    assert ref.kind == "path" and ref.value == os.path.expanduser("~/pipe")
    assert parse_ref("local-dir:~/x").want == "dir"
    assert parse_ref("file:~/x.pt").want == "file"


def test_existing_dir_and_file_name_the_config_key(tmp_path):
    (tmp_path / "f.pt").write_bytes(b"x")
    assert parse_ref(f"file:{tmp_path / 'f.pt'}").existing_file("models.m.weights") == tmp_path / "f.pt"
    assert parse_ref(f"local-dir:{tmp_path}").existing_dir("generator.model") == tmp_path
    with pytest.raises(BackendError, match="generator.model.*is a file, not a folder"):
        parse_ref(f"local-dir:{tmp_path / 'f.pt'}").existing_dir("generator.model")
    with pytest.raises(BackendError, match="evaluate.mpnet_model: folder does not exist"):
        parse_ref(f"local-dir:{tmp_path / 'none'}").existing_dir("evaluate.mpnet_model")
    with pytest.raises(BackendError, match="file not found"):
        parse_ref(str(tmp_path / "missing.pt")).existing_file("models.m.weights")


@pytest.mark.parametrize("bad", ["", "  ", "hf-hub:", "file:", None, 3])
def test_empty_or_non_string_reference_is_an_error(bad):
    with pytest.raises(BackendError):
        parse_ref(bad)


def test_ref_is_frozen_and_only_paths_have_a_path():
    ref = parse_ref("hf-hub:a/b")
    assert isinstance(ref, Ref)
    with pytest.raises(AttributeError):
        ref.kind = "path"  # type: ignore[misc]
    with pytest.raises(BackendError, match="is a hub, not a local path"):
        _ = ref.path


def test_generator_and_prefetch_use_the_prefixes(tmp_path):
    from sieve.backends.generators import local_folder
    from sieve.prefetch import plan

    assert local_folder("hf-hub:owner/pipe") is None
    assert local_folder(f"local-dir:{tmp_path}") == tmp_path
    with pytest.raises(BackendError, match="generator folder does not exist"):
        local_folder("local-dir:nowhere/pipe")
    items = plan(
        {
            "models": {},
            "generator": {"source": "diffusers", "model": "hf-hub:owner/pipe"},
            "concept_sets": {},
            "probes": {},
        }
    )
    assert [(i.kind, i.ref) for i in items] == [("generator", "owner/pipe")]
    local = plan(
        {
            "models": {},
            "generator": {"source": "diffusers", "model": f"local-dir:{tmp_path}"},
            "concept_sets": {},
            "probes": {},
        }
    )
    assert local == []


def test_model_weights_with_file_prefix_load_as_a_checkpoint(tmp_path):
    import torch

    from sieve.backends.models import load_checkpoint

    path = tmp_path / "w"  # no suffix: only the prefix says it is a file
    torch.save({"a": torch.zeros(2)}, path)
    assert list(load_checkpoint(f"file:{path}")) == ["a"]
    with pytest.raises(BackendError, match="checkpoint file not found"):
        load_checkpoint("file:" + str(tmp_path / "missing"))
    with pytest.raises(BackendError, match="hub repository is not a checkpoint file"):
        load_checkpoint("hf-hub:owner/name")
