"""Prefetch and offline mode, without network: what `plan` lists, that an offline job fails at once naming the
missing weight and the prefetch command, and that files in the caches (where prefetch puts them) load offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision

from helpers import make_image_folder, run_snakemake, snakemake_env, tiny_config
from sieve.backends import BackendError
from sieve.backends.models import PLACES365_URL, load_model
from sieve.backends.offline import require_timm, set_offline, timm_weights_source
from sieve.concepts import ConceptSetError, fetch_concept_list
from sieve.prefetch import PrefetchError, plan, prefetch

SQUEEZENET = "IMAGENET1K_V1"


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty TORCH_HOME and HF_HOME for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


@pytest.fixture
def offline(caches, monkeypatch):
    for var in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    return caches


def _squeezenet_url() -> str:
    return torchvision.models.get_weight(f"SqueezeNet1_1_Weights.{SQUEEZENET}").url


def _seed_torch_hub(root: Path, url: str, state: dict) -> Path:
    path = root / "torch" / "hub" / "checkpoints" / Path(url).name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_plan_lists_every_download_and_nothing_local(tmp_path):
    ckpt = tmp_path / "mine.pth"
    ckpt.write_bytes(b"x")
    words = tmp_path / "words.txt"
    words.write_text("cat\n")
    config = {
        "models": {
            "a_tv": {"source": "torchvision", "arch": "squeezenet1_1", "weights": SQUEEZENET},
            "b_timm": {"source": "timm", "arch": "test_resnet", "weights": "pretrained"},
            "c_places": {"source": "places365", "arch": "resnet18"},
            "d_local": {"source": "torchvision", "arch": "resnet18", "weights": str(ckpt)},
            "e_python": {"source": "python", "factory": "tinymodels:hotspot_cnn"},
            "f_random": {"source": "timm", "arch": "test_resnet", "weights": None},
        },
        "probes": {
            "inet": {"kind": "imagenette", "path": str(tmp_path / "inet"), "download": True},
            "mine": {"kind": "imagefolder", "path": str(tmp_path)},
        },
        "embedder": {"source": "open_clip", "arch": "ViT-B-16", "pretrained": "openai"},
        "generator": {"source": "diffusers", "model": "stabilityai/sdxl-turbo"},
        "concept_sets": {
            "broden": {"url": "https://example.org/broden.txt", "sha256": "0" * 64},
            "mine": {"path": str(words)},
        },
        "evaluate": {"mpnet_model": "sentence-transformers/all-mpnet-base-v2"},
    }
    got = [(i.kind, i.key, i.ref, i.cache) for i in plan(config)]
    assert got == [
        ("model", "models.a_tv", f"torchvision squeezenet1_1 {SQUEEZENET}", "TORCH_HOME"),
        ("model", "models.b_timm", "timm/test_resnet.r160_in1k", "HF_HOME"),
        ("model", "models.c_places", PLACES365_URL.format(arch="resnet18"), "TORCH_HOME"),
        ("embedder", "embedder", "open_clip ViT-B-16/openai", "HF_HOME"),
        ("generator", "generator.model", "stabilityai/sdxl-turbo", "HF_HOME"),
        ("concept_set", "concept_sets.broden", "https://example.org/broden.txt", "resources/concepts"),
        ("probe", "probes.inet", "imagenette val", str(tmp_path / "inet")),
    ]
    # the final-layer metrics' sentence model only when a model has ground-truth class names
    config["models"]["a_tv"]["ground_truth"] = str(words)
    assert ("sentence_model", "sentence-transformers/all-mpnet-base-v2") in [
        (i.kind, i.ref) for i in plan(config)
    ]
    # a published class list (url + sha256) is fetched too; a local one is not
    config["models"]["c_places"]["ground_truth"] = {"url": "https://example.org/cats.txt", "sha256": "1" * 64}
    assert [(i.kind, i.key, i.ref, i.cache) for i in plan(config) if i.kind == "ground_truth"] == [
        (
            "ground_truth",
            "models.c_places.ground_truth",
            "https://example.org/cats.txt",
            "resources/ground_truth",
        )
    ]
    # a local generator folder and a synthetic world need nothing
    assert (
        plan(
            {
                "models": {"s": {"source": "synthetic"}},
                "probes": {"s": {"kind": "synthetic"}},
                "embedder": {"source": "synthetic"},
                "generator": {"source": "diffusers", "model": str(tmp_path)},
                "concept_sets": {"s": {"synthetic": "default"}},
            }
        )
        == []
    )


def _missing_cases():
    return {
        "torchvision": (
            lambda: load_model(
                "m", {"source": "torchvision", "arch": "squeezenet1_1", "weights": SQUEEZENET}
            ),
            [f"torchvision weights {SQUEEZENET}", Path(_squeezenet_url()).name],
        ),
        "timm": (
            lambda: load_model("m", {"source": "timm", "arch": "test_resnet", "weights": "pretrained"}),
            ["timm weights of test_resnet", "timm/test_resnet.r160_in1k"],
        ),
        "places365": (
            lambda: load_model("m", {"source": "places365", "arch": "resnet18"}),
            [PLACES365_URL.format(arch="resnet18")],
        ),
        "open_clip": (
            lambda: __import__("sieve.backends.embedders", fromlist=["x"]).load_open_clip(
                "ViT-B-16", "openai"
            ),
            ["open_clip weights ViT-B-16/openai"],
        ),
        "diffusers": (
            lambda: __import__("sieve.backends.generators", fromlist=["x"]).load_generator(
                {"source": "diffusers", "model": "stabilityai/sdxl-turbo"}
            ),
            ["'stabilityai/sdxl-turbo'"],
        ),
        "concept_list": (
            lambda: fetch_concept_list(
                "https://example.org/broden.txt", "0" * 64, Path(".") / "nowhere" / "broden.txt"
            ),
            ["concept list (https://example.org/broden.txt)"],
        ),
    }


@pytest.mark.parametrize("case", sorted(_missing_cases()))
def test_offline_missing_weight_fails_at_once_naming_it_and_prefetch(offline, case):
    load, names = _missing_cases()[case]
    t0 = time.monotonic()
    with pytest.raises((BackendError, ConceptSetError)) as err:
        load()
    assert time.monotonic() - t0 < 20  # no network timeout
    msg = str(err.value)
    for name in names:
        assert name in msg, msg
    assert "snakemake prefetch" in msg and "offline" in msg


def test_offline_loads_torch_hub_checkpoints_prefetch_left(offline):
    """torchvision weights and a Places365 checkpoint (DataParallel `module.` keys) in TORCH_HOME load offline."""
    squeeze = torchvision.models.squeezenet1_1(weights=None).state_dict()
    _seed_torch_hub(offline, _squeezenet_url(), squeeze)
    m = load_model("s", {"source": "torchvision", "arch": "squeezenet1_1", "weights": SQUEEZENET})
    assert torch.equal(m.model.state_dict()["features.0.weight"], squeeze["features.0.weight"])

    places = torchvision.models.resnet18(weights=None, num_classes=365).state_dict()
    _seed_torch_hub(
        offline,
        PLACES365_URL.format(arch="resnet18"),
        {"state_dict": {f"module.{k}": v for k, v in places.items()}},
    )
    p = load_model("p", {"source": "places365", "arch": "resnet18"})
    assert torch.equal(p.model.state_dict()["fc.weight"], places["fc.weight"])
    assert p.n_neurons == 512 and p.layer == "layer4"


def test_offline_loads_timm_weights_from_the_hub_cache(caches):
    """A hub snapshot laid out as prefetch (huggingface_hub) leaves it: timm's own loader finds it offline."""
    import timm
    from safetensors.torch import save_file

    kind, repo = timm_weights_source("test_resnet")
    assert kind == "hf"
    state = timm.create_model("test_resnet", pretrained=False).state_dict()
    repo_dir = caches / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snap = repo_dir / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snap / "model.safetensors"))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("a" * 40)
    torch.save(state["fc.weight"], caches / "fc.pt")
    code = (
        "import torch; from sieve.backends.models import load_model; "
        "m = load_model('t', {'source': 'timm', 'arch': 'test_resnet', 'weights': 'pretrained'}); "
        f"assert torch.equal(m.model.state_dict()['fc.weight'], torch.load({str(caches / 'fc.pt')!r})); print('ok')"
    )
    env = {**snakemake_env(), "SIEVE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(caches / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]
    # and with the snapshot gone, the same call fails at once
    set_offline(True)
    try:
        import shutil

        shutil.rmtree(repo_dir)
        with pytest.raises(BackendError, match="timm/test_resnet.r160_in1k"):
            require_timm("test_resnet")
    finally:
        set_offline(False)


def test_prefetch_refuses_offline_mode(offline):
    with pytest.raises(PrefetchError, match="offline mode is on"):
        prefetch({"models": {}, "concept_sets": {}})


def test_prefetch_reports_every_failure_and_keeps_what_succeeded(caches, monkeypatch, tmp_path):
    set_offline(False)
    for var in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    good = tmp_path / "good.txt"
    good.write_text("cat\ndog\n")
    config = {
        "models": {},
        "concept_sets": {
            "good": {"url": good.as_uri(), "sha256": hashlib.sha256(good.read_bytes()).hexdigest()},
            "bad": {"url": good.as_uri(), "sha256": "f" * 64},
        },
    }
    with pytest.raises(PrefetchError) as err:
        prefetch(config, resources_dir=tmp_path / "res")
    assert "1 of 2 items" in str(err.value) and "concept_sets.bad" in str(err.value)
    assert "checksum mismatch" in str(err.value)
    assert (tmp_path / "res" / "good.txt").read_text() == "cat\ndog\n"
    assert not (tmp_path / "res" / "bad.txt").exists()


@pytest.mark.workflow
def test_snakemake_prefetch_then_offline_jobs(tmp_path, monkeypatch):
    """`snakemake prefetch` (online, even with `offline: true`) fills the caches; offline jobs then use them,
    and a job whose weight was never fetched fails at once naming it and the prefetch command."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    images = make_image_folder(tmp_path / "images", n_per_class=2, size=16, corrupt=0)
    words = tmp_path / "remote_words.txt"
    words.write_text("cat\ncat\ndog\n")
    concept = {"url": words.as_uri(), "sha256": hashlib.sha256(words.read_bytes()).hexdigest()}
    # the torchvision weights are "already downloaded" (no network here): prefetch loads them from TORCH_HOME
    _seed_torch_hub(tmp_path, _squeezenet_url(), torchvision.models.squeezenet1_1(weights=None).state_dict())
    config = tiny_config(
        images,
        offline=True,
        concept_sets={"words": concept},
        embedder={"source": "synthetic"},
        generator={"source": "synthetic"},
    )
    config["models"]["squeeze"] = {"source": "torchvision", "arch": "squeezenet1_1", "weights": SQUEEZENET}
    work = tmp_path / "work"

    run_snakemake(work, config, ("prefetch",))
    manifest = json.loads((work / "resources" / "prefetch.json").read_text())
    assert [(i["key"], i["status"]) for i in manifest["items"]] == [
        ("models.squeeze", "ok"),
        ("concept_sets.words", "ok"),
    ]
    assert manifest["caches"]["TORCH_HOME"] == str(tmp_path / "torch")
    assert (work / "resources" / "concepts" / "words.txt").read_text() == words.read_text()

    words.unlink()  # the "network" is gone: the offline job must use the prefetched copy
    run_snakemake(work, config, ("results/concepts/words/concepts.json",))
    prepared = json.loads((work / "results" / "concepts" / "words" / "concepts.json").read_text())
    assert [c["text"] for c in prepared["concepts"]] == ["cat", "dog"]

    config["models"]["vit"] = {"source": "torchvision", "arch": "vit_b_16", "weights": "IMAGENET1K_V1"}
    t0 = time.monotonic()
    proc = run_snakemake(work, config, ("results/vit/pics/activations.h5",), check=False)
    assert proc.returncode != 0 and time.monotonic() - t0 < 120
    log = (work / "logs" / "vit" / "pics" / "probe_activations.log").read_text()
    assert "torchvision weights IMAGENET1K_V1" in log and "vit_b_16-c867db91.pth" in log
    assert "snakemake prefetch" in log and "this job runs offline" in log
