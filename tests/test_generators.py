"""Generators: the diffusers source on a tiny pipeline saved to a folder, the python source, cache keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from helpers import jobs_run, run_snakemake, tiny_config
from sieve.backends import BackendError
from sieve.backends.generators import (
    DiffusersGenerator,
    Generator,
    check_generator_source,
    generator_settings,
    load_generator,
)


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory) -> Path:
    from tinydiffusion import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("gen") / "tiny-sd")


def diffusers_spec(folder: Path, **kw) -> dict:
    return {
        "source": "diffusers",
        "model": str(folder),
        "steps": 1,
        "guidance_scale": 0.0,
        "resolution": 32,
        **kw,
    }


def test_diffusers_folder_same_seed_same_image(pipe_dir):
    g1 = load_generator(diffusers_spec(pipe_dir), "cpu")
    assert isinstance(g1, Generator) and isinstance(g1, DiffusersGenerator)
    a = g1.generate(["a dog", "a cat", "a dog"], [3, 4, 5])
    assert a.shape == (3, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= float(a.min()) and float(a.max()) <= 1
    # a fresh load of the same folder, the same (prompt, seed): the same image
    g2 = load_generator(diffusers_spec(pipe_dir), "cpu")
    b = g2.generate(["a dog", "a cat", "a dog"], [3, 4, 5])
    assert torch.equal(a, b)
    # an image does not depend on the batch it was generated in
    alone = g2.generate(["a cat"], [4])
    torch.testing.assert_close(alone[0], a[1], atol=1e-5, rtol=0)
    # a different seed or prompt gives a different image
    assert (a[0] - a[2]).abs().max() > 1e-3
    assert (g2.generate(["a cow"], [3])[0] - a[0]).abs().max() > 1e-3


def test_missing_generator_folder_is_one_clear_error(tmp_path):
    missing = tmp_path / "no" / "such-pipeline"
    for spec in (
        {"source": "diffusers", "model": str(missing)},
        {"source": "diffusers", "model": "./pipes/nope"},
    ):
        with pytest.raises(BackendError, match="generator folder does not exist") as exc:
            load_generator(spec, "cpu")
        assert spec["model"] in str(exc.value)
        with pytest.raises(BackendError, match="generator folder does not exist"):
            check_generator_source(spec)
    check_generator_source(
        {"source": "diffusers", "model": "stabilityai/sdxl-turbo"}
    )  # a hub id: not checked here
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackendError, match="not a diffusers pipeline folder"):
        load_generator({"source": "diffusers", "model": str(tmp_path / "file")})
    with pytest.raises(BackendError, match=r"cannot load a diffusers pipeline"):
        load_generator({"source": "diffusers", "model": str(tmp_path)})  # a folder that is no pipeline


@pytest.mark.workflow
def test_missing_generator_folder_stops_snakemake_before_any_job(tmp_path, image_folder):
    missing = tmp_path / "nowhere" / "sdxl"
    (image_folder / "words.txt").write_text("dog\ncat\n")
    cfg = tiny_config(image_folder, generator={"source": "diffusers", "model": str(missing)})
    proc = run_snakemake(tmp_path / "run", cfg, extra=("-n",), check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "generator folder does not exist" in text and str(missing) in text
    assert text.count("generator folder does not exist") == 1
    assert not jobs_run(proc)


def test_python_source_generator_and_pipeline_factory(pipe_dir):
    g = load_generator(
        {"source": "python", "factory": "tinydiffusion:pattern_generator", "resolution": 24}, "cpu"
    )
    x = g.generate(["a", "b"], [0, 0])
    assert x.shape == (2, 3, 24, 24)
    assert torch.equal(x[0], g.generate(["a"], [0])[0])
    # a factory may return a diffusers pipeline: it is wrapped with the spec's steps/resolution
    w = load_generator(
        {
            "source": "python",
            "factory": "tinydiffusion:build_tiny_pipeline",
            "resolution": 32,
            "steps": 1,
            "kwargs": {"seed": 0},
        },
        "cpu",
    )
    assert isinstance(w, DiffusersGenerator) and w.generate(["x"], [1]).shape == (1, 3, 32, 32)
    with pytest.raises(BackendError, match="returned dict"):
        load_generator({"source": "python", "factory": "json:loads", "kwargs": {"s": "{}"}})
    with pytest.raises(BackendError, match="needs 'factory"):
        load_generator({"source": "python"})
    with pytest.raises(BackendError, match="unknown generator source 'dall-e'"):
        load_generator({"source": "dall-e"})


def test_cache_key_tracks_only_what_changes_pixels(pipe_dir, tmp_path):
    base = diffusers_spec(pipe_dir, batch_size=4, shards=2, keep_images="thumbnails", images_per_concept=5)
    key = generator_settings(base, torch.float32)
    same = generator_settings(
        {**base, "batch_size": 16, "shards": 8, "keep_images": "none", "images_per_concept": 20},
        torch.float32,
    )
    assert key == same
    for change in ({"steps": 2}, {"resolution": 64}, {"guidance_scale": 1.5}):
        assert generator_settings({**base, **change}, torch.float32) != key
    assert generator_settings(base, torch.bfloat16) != key
    # a local folder is fingerprinted: editing a config inside it changes the key
    import shutil

    copy = shutil.copytree(pipe_dir, tmp_path / "copy")
    k1 = generator_settings(diffusers_spec(copy), "float32")["fingerprint"]
    cfg = copy / "scheduler" / "scheduler_config.json"
    data = json.loads(cfg.read_text())
    data["beta_end"] = 0.02
    cfg.write_text(json.dumps(data))
    assert generator_settings(diffusers_spec(copy), "float32")["fingerprint"] != k1


@pytest.mark.parametrize("guidance", [0.0, 3.0])
def test_each_distinct_prompt_is_encoded_once_and_images_are_unchanged(pipe_dir, guidance, monkeypatch):
    """A batch holds 1 or 2 concepts' prompts: they are encoded once each, and the images equal the ones the
    pipeline gives when it encodes every prompt itself (bit for bit on the CPU)."""
    import sieve.backends.generators as generators

    gen = load_generator(
        diffusers_spec(pipe_dir, guidance_scale=guidance), torch.device("cpu"), torch.float32
    )
    encoded: list[list[str] | None] = []  # the prompts of each encode_prompt call (None: embeddings given)
    real = gen.pipe.encode_prompt

    def counting(*args, **kwargs):
        prompt = kwargs.get("prompt", args[0] if args else None)
        encoded.append(None if prompt is None else list(prompt))
        return real(*args, **kwargs)

    monkeypatch.setattr(gen.pipe, "encode_prompt", counting)
    prompts, seeds = ["a dog"] * 5 + ["a red cat"] * 3, list(range(8))
    once = gen.generate(prompts, seeds)
    assert encoded == [["a dog", "a red cat"], None]
    monkeypatch.setattr(generators, "encode_distinct", lambda *_: None)
    encoded.clear()
    every = gen.generate(prompts, seeds)
    assert encoded == [prompts]  # the pipeline's own path encodes all 8
    assert torch.equal(once, every)


# ------------------------------------------------------------------------------------------- speed settings


def _conv_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_compile_wraps_the_unet_and_the_vae_decoder_and_keeps_the_images(pipe_dir):
    """``compile: true`` (backend eager on the CPU: tracing, no code generation) compiles the UNet and the VAE
    decoder of the loaded pipeline once; its images equal the eager pipeline's bit for bit."""
    from torch._dynamo.eval_frame import OptimizedModule

    prompts, seeds = ["a dog", "a cat", "a dog"], [3, 4, 5]
    eager = load_generator(diffusers_spec(pipe_dir), "cpu")
    assert not isinstance(eager.pipe.unet, OptimizedModule)
    assert eager.speed == {"channels_last": [], "compile": []}
    import logging

    # the load's log line, by a handler on this logger only (caplog would turn torch's tracing logs on)
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("sieve.backends.generators")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        compiled = load_generator(diffusers_spec(pipe_dir, compile=True, compile_backend="eager"), "cpu")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert isinstance(compiled.pipe.unet, OptimizedModule)
    assert isinstance(compiled.pipe.vae.decoder, OptimizedModule)
    assert not isinstance(compiled.pipe.vae.encoder, OptimizedModule)  # text-to-image never encodes
    assert compiled.speed["compile"] == ["unet", "vae.decoder"]
    assert compiled.speed["compile_backend"] == "eager" and compiled.speed["compile_mode"] == "default"
    assert len(lines) == 1 and "channels_last: off" in lines[0]
    assert "torch.compile: unet, vae.decoder (backend eager, mode default" in lines[0]
    assert torch.equal(compiled.generate(prompts, seeds), eager.generate(prompts, seeds))
    # applying the settings again wraps nothing twice
    from sieve.backends.generators import apply_speed

    unet = compiled.pipe.unet
    assert apply_speed(compiled.pipe, {"compile": True, "compile_backend": "eager"}) == compiled.speed
    assert compiled.pipe.unet is unet and not isinstance(unet._orig_mod, OptimizedModule)
    # a later batch of another size runs through the same compiled modules
    assert torch.equal(compiled.generate(["a cow"], [9]), eager.generate(["a cow"], [9]))


def test_channels_last_puts_the_unet_and_vae_convolutions_in_channels_last(pipe_dir):
    prompts, seeds = ["a dog", "a cat"], [3, 4]
    default = load_generator(diffusers_spec(pipe_dir), "cpu")
    # auto: on a CUDA device only, so the CPU's images are those of the default memory format
    auto = load_generator(diffusers_spec(pipe_dir, channels_last="auto"), "cpu")
    assert auto.speed["channels_last"] == []
    for w in _conv_weights(auto.pipe.unet) + _conv_weights(auto.pipe.vae):
        assert w.is_contiguous()
    assert torch.equal(auto.generate(prompts, seeds), default.generate(prompts, seeds))
    on = load_generator(diffusers_spec(pipe_dir, channels_last=True), "cpu")
    assert on.speed["channels_last"] == ["unet", "vae"]
    weights = _conv_weights(on.pipe.unet) + _conv_weights(on.pipe.vae)
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # a real change of layout, not a 1x1 no-op
    # the same image up to float rounding (measured: 4e-7 at most on this pipeline)
    torch.testing.assert_close(
        on.generate(prompts, seeds), default.generate(prompts, seeds), atol=1e-5, rtol=0
    )


def test_speed_settings_on_an_sdxl_pipeline():
    """The python source's pipeline goes through the same function: an SDXL layout (two text encoders) gets
    both settings and gives the images of the eager, default-format pipeline."""
    import sys

    from helpers import REPO

    sys.path.insert(0, str(REPO / "bench"))
    from bench_generate import sdxl_pipeline
    from torch._dynamo.eval_frame import OptimizedModule

    from sieve.backends.generators import pipeline_generator

    def pipe():  # random weights: the same ones each time
        torch.manual_seed(0)
        return sdxl_pipeline("sdxl-tiny", torch.float32, "cpu")

    spec = diffusers_spec(Path("unused"), source="python")
    plain = pipeline_generator(pipe(), spec)
    fast = pipeline_generator(
        pipe(), {**spec, "compile": True, "compile_backend": "eager", "channels_last": True}
    )
    assert type(fast.pipe).__name__ == "StableDiffusionXLPipeline"
    assert isinstance(fast.pipe.unet, OptimizedModule) and isinstance(fast.pipe.vae.decoder, OptimizedModule)
    assert fast.speed["channels_last"] == ["unet", "vae"]
    torch.testing.assert_close(
        fast.generate(["a dog", "a cat"], [1, 2]),
        plain.generate(["a dog", "a cat"], [1, 2]),
        atol=1e-5,
        rtol=0,
    )


def test_speed_settings_asked_of_a_generator_without_a_pipeline_are_errors():
    """The synthetic world and a python factory's own generator have no UNet or VAE: ``compile: true`` or
    ``channels_last: true`` is an error naming the key (at parse time for the synthetic source); ``auto`` and
    ``false`` ask nothing of them."""
    for key in ("compile", "channels_last"):
        with pytest.raises(
            BackendError, match=rf"generator.{key}: true needs a diffusers pipeline.*synthetic"
        ):
            check_generator_source({"source": "synthetic", key: True})
        with pytest.raises(BackendError, match=rf"generator.{key}: true needs a diffusers pipeline"):
            load_generator({"source": "python", "factory": "tinydiffusion:PatternGenerator", key: True})
    check_generator_source({"source": "synthetic", "compile": False, "channels_last": "auto"})
    g = load_generator(
        {"source": "python", "factory": "tinydiffusion:PatternGenerator", "channels_last": "auto"}, "cpu"
    )
    assert g.generate(["x"], [0]).shape[0] == 1


def test_speed_settings_are_not_in_the_cache_key_and_reach_the_job_as_resources(pipe_dir):
    from sieve.backends.generators import SPEED_KEYS, generation_spec, speed_from_resources, speed_resources

    base = diffusers_spec(pipe_dir)
    fast = {
        **base,
        "batch_size": 3,
        "channels_last": True,
        "compile": True,
        "compile_backend": "eager",
        "compile_mode": "max-autotune-no-cudagraphs",
    }
    assert generator_settings(fast, torch.float32) == generator_settings(base, torch.float32)
    assert generation_spec(fast) == generation_spec(base) == base  # the rules' params
    res = speed_resources(fast)
    assert all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in res.values())
    assert speed_from_resources(res) == {k: fast[k] for k in SPEED_KEYS}
    # the schema's defaults when the spec has none
    assert speed_from_resources(speed_resources(base)) == {
        "batch_size": 16,
        "channels_last": "auto",
        "compile": False,
        "compile_backend": "inductor",
        "compile_mode": "default",
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("compile", "sometimes", "'sometimes' is not of type 'boolean'"),
        ("channels_last", "maybe", "'maybe' is not one of ['auto', True, False]"),
        ("compile_mode", "fast", "'fast' is not one of ['default'"),
        ("compile_backend", "", "'' should be non-empty"),
    ],
)
def test_bad_speed_settings_are_schema_errors_naming_the_key(key, value, message):
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from sieve.config import SCHEMA_PATH, coerce_booleans

    cfg = tiny_config(Path("images"), generator={key: value})
    coerce_booleans(cfg)
    with pytest.raises(WorkflowError) as err:
        validate(cfg, str(SCHEMA_PATH))
    assert message in str(err.value) and f"On instance['generator']['{key}']" in str(err.value)


def test_shell_spellings_of_channels_last_become_bools():
    from sieve.config import coerce_booleans

    cfg = {"generator": {"channels_last": "TRUE", "compile": "no"}}
    coerce_booleans(cfg)
    assert cfg == {"generator": {"channels_last": True, "compile": False}}
    cfg = {"generator": {"channels_last": "auto"}}
    coerce_booleans(cfg)
    assert cfg == {"generator": {"channels_last": "auto"}}
