"""Text-to-image generators, keyed by ``source``.

Contract for every builder registered in ``GENERATORS``: ``builder(spec: dict, device, dtype) -> Generator``.

- ``diffusers``: ``DiffusionPipeline.from_pretrained(spec["model"], torch_dtype=dtype, **spec["kwargs"])`` of a
  hub id or a local folder (the same call for both; a local folder that does not exist is an error naming it,
  raised before anything is downloaded or loaded). Each image gets its own CPU ``torch.Generator`` seeded with
  its seed, so an image depends only on (prompt, seed), not on the batch it was generated in.
- ``python``: ``factory: "package.module:function"`` called with ``kwargs`` (plus ``device``, ``dtype`` and
  ``resolution`` where its signature takes them and ``kwargs`` does not set them); it returns a
  :class:`Generator` or a diffusers pipeline (then wrapped like the ``diffusers`` source).
- ``synthetic``: the planted world's renderer (:mod:`sieve.synthetic.backends`, a plugin listed in
  :data:`sieve.backends.PLUGINS`).

Speed settings (:data:`SPEED_KEYS`) apply to every diffusers pipeline, of either source, once when it is loaded
(:func:`apply_speed`): ``channels_last`` puts the UNet and the VAE in the channels-last memory format (``auto``:
on a CUDA device only), ``compile`` wraps the denoiser (``unet``, or ``transformer`` in a pipeline without one)
and ``vae.decoder`` in ``torch.compile`` with ``compile_backend`` and ``compile_mode``. They change no pixel
beyond float rounding, so they are not in the cache key (:func:`generator_settings`), and the rules pass them
as resources, not params (:func:`generation_spec`): changing them reruns nothing. A generator that is no
pipeline (``synthetic``, a ``python`` factory's own object) has nothing to apply them to: asking it for
``compile: true`` or ``channels_last: true`` is an error.

This module stays light at import time (no torch import) so that the Snakefile can check the generator
config (:func:`check_generator_source`) when it is parsed.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..config import schema_default, with_defaults
from ..io import local_file_fingerprints
from . import BackendError, Registry, import_factory
from .refs import parse_ref

if TYPE_CHECKING:
    import torch

GENERATORS = Registry("generator")
log = logging.getLogger(__name__)

# config keys that change the pixels of a generated image (the cache key is built from these)
PIXEL_KEYS = ("source", "model", "factory", "kwargs", "spec", "steps", "guidance_scale", "resolution")
# config keys that change only how fast images come: neither in the cache key nor in the rules' params (the shard
# job gets them as resources, :func:`speed_resources`), so changing one reruns nothing
SPEED_KEYS = ("batch_size", "channels_last", "compile", "compile_backend", "compile_mode")


@runtime_checkable
class Generator(Protocol):
    resolution: int

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        """One image per (prompt, seed) -> [B, 3, R, R] float in [0, 1], on the generator's device.
        The same (prompt, seed) always gives the same image."""
        ...


def load_generator(
    spec: dict[str, Any], device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> Generator:
    """The one entry point: config ``generator:`` spec -> Generator."""
    import torch

    generator = GENERATORS.get(spec.get("source"))(spec, torch.device(device), dtype or torch.float32)
    if not isinstance(generator, DiffusersGenerator):
        check_speed_applies(spec, f"source {spec.get('source')!r} ({type(generator).__name__})")
    return generator


# ----------------------------------------------------------------------------------------------------------
# speed settings


def generation_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A generator spec without its speed settings (:data:`SPEED_KEYS`): the rules' param."""
    return {k: v for k, v in spec.items() if k not in SPEED_KEYS}


def speed_resources(spec: dict[str, Any]) -> dict[str, int | str]:
    """The speed settings as Snakemake resources (an int or a string each; the schema's defaults where the spec
    has none). :func:`speed_from_resources` reads them back."""
    full = with_defaults(spec, "generator")
    return {k: int(full[k]) if k == "batch_size" else str(full[k]).lower() for k in SPEED_KEYS if k in full}


def speed_from_resources(resources: Any) -> dict[str, Any]:
    """The speed settings a shard job got as resources (:func:`speed_resources`), as the config writes them."""
    words = {"true": True, "false": False}
    out: dict[str, Any] = {}
    for key in SPEED_KEYS:
        value = getattr(resources, key, None) if not isinstance(resources, dict) else resources.get(key)
        if value is None:
            continue
        if key == "batch_size":
            out[key] = int(value)
        elif key in ("channels_last", "compile"):
            out[key] = words.get(str(value), str(value))
        else:
            out[key] = str(value)
    return out


def check_speed_applies(spec: dict[str, Any], what: str) -> None:
    """``compile: true`` and ``channels_last: true`` need a diffusers pipeline: an error naming the key
    otherwise (``channels_last: auto`` asks nothing of a generator that is no pipeline)."""
    for key in ("compile", "channels_last"):
        if spec.get(key) is True:
            raise BackendError(
                f"generator.{key}: true needs a diffusers pipeline (a UNet and a VAE to apply it to); the "
                f"generator of {what} has none: remove the key or set it to false"
            )


def apply_speed(pipe: Any, spec: dict[str, Any], device: Any = None) -> dict[str, Any]:
    """Apply the spec's speed settings to a loaded diffusers pipeline, in place, once; returns what was applied.

    - ``channels_last`` (``auto``: on a CUDA device only, so the CPU's images stay those of the default format):
      the UNet and the VAE (their convolutions' weights) in the channels-last memory format.
    - ``compile``: ``pipe.unet`` (``pipe.transformer`` in a pipeline without a UNet) and ``pipe.vae.decoder``
      replaced by ``torch.compile(module, backend=compile_backend, mode=compile_mode)``; the compile itself
      runs at the first batch (and again for a new batch shape), once per loaded pipeline.
    """
    import torch

    full = with_defaults(spec, "generator")
    device = torch.device(device if device is not None else pipe.device)
    want_cl = full["channels_last"]
    channels_last = device.type == "cuda" if want_cl == "auto" else bool(want_cl)
    denoiser = next((n for n in ("unet", "transformer") if getattr(pipe, n, None) is not None), None)
    vae = getattr(pipe, "vae", None)
    applied: dict[str, Any] = {"channels_last": [], "compile": []}
    if channels_last:
        for name in ("unet", "vae"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.to(memory_format=torch.channels_last)
                applied["channels_last"].append(name)
        if not applied["channels_last"] and want_cl is True:
            raise BackendError(
                f"generator.channels_last: true: the pipeline {type(pipe).__name__} has no UNet or VAE"
            )
    if full["compile"]:
        if denoiser is None and vae is None:
            raise BackendError(
                f"generator.compile: true: the pipeline {type(pipe).__name__} has no UNet, transformer or VAE"
            )
        mode = None if full["compile_mode"] == "default" else full["compile_mode"]
        options = {"backend": full["compile_backend"], "mode": mode}
        owners = [(pipe, denoiser, denoiser), (vae, "decoder", "vae.decoder")]
        for owner, attr, name in owners:
            module = getattr(owner, attr, None) if owner is not None and attr else None
            if module is None:
                continue
            if not hasattr(module, "_orig_mod"):  # compiled already (a second call): never wrapped twice
                setattr(owner, attr, torch.compile(module, **options))
            applied["compile"].append(name)
        applied["compile_backend"] = full["compile_backend"]
        applied["compile_mode"] = full["compile_mode"]
    return applied


def describe_speed(applied: dict[str, Any]) -> str:
    """One line of what :func:`apply_speed` applied (the load's log line)."""
    cl = ", ".join(applied["channels_last"]) or "off"
    comp = (
        f"{', '.join(applied['compile'])} (backend {applied['compile_backend']}, mode "
        f"{applied['compile_mode']}; compiled at the first batch)"
        if applied["compile"]
        else "off"
    )
    return f"channels_last: {cl}; torch.compile: {comp}"


# ----------------------------------------------------------------------------------------------------------
# local folders vs hub ids


def local_folder(ref: str) -> Path | None:
    """The local folder ``generator.model`` names, or None for a hub id (:func:`~.refs.parse_ref`: ``hf-hub:`` and
    ``local-dir:`` prefixes, else by shape); a path that does not exist, or is a file, is an error."""
    parsed = parse_ref(ref, hub_ids=True)
    if parsed.kind == "hub":
        return None
    if parsed.kind != "path":
        raise BackendError(
            f"generator.model {ref!r}: give a diffusers pipeline folder or a Hugging Face hub id, not a URL"
        )
    path = parsed.path
    if path.is_dir():
        return path
    if path.exists():
        raise BackendError(f"generator model {ref!r} is a file, not a diffusers pipeline folder")
    raise BackendError(
        f"generator folder does not exist: {ref!r} (config key generator.model; give an existing "
        "diffusers pipeline folder or a Hugging Face hub id such as 'stabilityai/sdxl-turbo')"
    )


def check_generator_source(spec: dict[str, Any]) -> None:
    """Cheap config check (no model is loaded): raises a :class:`BackendError` naming the problem."""
    source = spec.get("source", schema_default("generator.source"))
    if source == "diffusers":
        model = spec.get("model")
        if not model:
            raise BackendError("generator: source diffusers needs 'model' (a hub id or a local folder)")
        local_folder(str(model))
    elif source == "python" and not spec.get("factory"):
        raise BackendError("generator: source python needs 'factory: package.module:function'")
    elif source == "synthetic":
        check_speed_applies(spec, "source 'synthetic' (the planted world's renderer)")


def folder_fingerprint(folder: Path) -> str:
    """A cheap content fingerprint of a pipeline folder: JSON/text files by content, weights by name and size."""
    from ..io import stable_hash

    parts = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = str(p.relative_to(folder)).replace(os.sep, "/")
        if p.suffix in (".json", ".txt") and p.stat().st_size < 5_000_000:
            parts.append([rel, p.read_text(encoding="utf-8", errors="replace")])
        else:
            parts.append([rel, p.stat().st_size])
    return stable_hash(parts)


def generator_settings(spec: dict[str, Any], dtype: torch.dtype | str) -> dict[str, Any]:
    """Everything that affects the pixels of a generated image: the content-addressed cache is keyed on this
    (plus prompt and seed). Batch size, shard count and ``keep_images`` are not part of it."""
    settings = {k: spec[k] for k in PIXEL_KEYS if k in spec}
    settings.setdefault("source", schema_default("generator.source"))
    settings["dtype"] = str(dtype).replace("torch.", "")
    if settings["source"] == "diffusers" and spec.get("model"):
        folder = local_folder(str(spec["model"]))
        if folder is not None:
            settings["model"] = str(folder.resolve())
            settings["fingerprint"] = folder_fingerprint(folder)
    if settings["source"] != "diffusers":
        settings.pop("model", None)
    settings.update({f"{k}_sha256": v for k, v in local_file_fingerprints(spec, ("spec",)).items()})
    return settings


# ----------------------------------------------------------------------------------------------------------
# diffusers


class DiffusersGenerator:
    """A diffusers text-to-image pipeline behind the :class:`Generator` contract."""

    def __init__(
        self,
        pipe: Any,
        resolution: int = 512,
        steps: int = 1,
        guidance_scale: float = 0.0,
        name: str = "pipeline",
        speed: dict[str, Any] | None = None,
    ) -> None:
        self.pipe = pipe
        self.resolution = int(resolution)
        self.steps = int(steps)
        self.guidance_scale = float(guidance_scale)
        self.name = name
        self.speed = speed or {"channels_last": [], "compile": []}  # what apply_speed applied
        if getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = (
                None  # a blacked-out image would count as "not active": AR must see the image
            )
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        import torch

        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        # CPU generators: the same (prompt, seed) gives the same initial noise on any device and in any batch
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        with torch.inference_mode():
            text = encode_distinct(self.pipe, list(prompts), self.guidance_scale) or {"prompt": list(prompts)}
            out = self.pipe(
                **text,
                num_inference_steps=self.steps,
                guidance_scale=self.guidance_scale,
                height=self.resolution,
                width=self.resolution,
                generator=gens,
                output_type="pt",
            )
        images = out.images
        if not isinstance(images, torch.Tensor):
            import numpy as np

            images = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)
        return images.float().clamp(0, 1)


# Pipelines whose encode_prompt returns (prompt, negative) embeddings, or (prompt, negative, pooled, negative
# pooled) for SDXL's two text encoders, that __call__ accepts back as keyword arguments.
_EMBEDS = {
    "StableDiffusionPipeline": ("prompt_embeds", "negative_prompt_embeds"),
    "StableDiffusionXLPipeline": (
        "prompt_embeds",
        "negative_prompt_embeds",
        "pooled_prompt_embeds",
        "negative_pooled_prompt_embeds",
    ),
}


def encode_distinct(pipe: Any, prompts: list[str], guidance_scale: float) -> dict[str, Any] | None:
    """The text embeddings of a batch as ``__call__`` keyword arguments, each distinct prompt encoded once (a
    batch of 16 holds 1 or 2 concepts' prompts); None when every prompt differs or the pipeline is not one of
    :data:`_EMBEDS` (then the pipeline encodes the prompts itself). Each prompt is tokenised and encoded on its
    own row either way, so the embeddings are those the pipeline would compute."""
    import torch

    names = _EMBEDS.get(type(pipe).__name__)
    distinct = list(dict.fromkeys(prompts))
    if names is None or len(distinct) == len(prompts):
        return None
    cfg = guidance_scale > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    embeds = pipe.encode_prompt(
        prompt=distinct, device=pipe.device, num_images_per_prompt=1, do_classifier_free_guidance=cfg
    )
    rows = torch.tensor([distinct.index(p) for p in prompts], device=pipe.device)
    return {name: e[rows] for name, e in zip(names, embeds, strict=True) if e is not None}


@GENERATORS.register("diffusers")
def _diffusers(spec: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Generator:
    model = spec.get("model")
    if not model:
        raise BackendError("generator: source diffusers needs 'model' (a hub id or a local folder)")
    folder = local_folder(str(model))
    hub_id = parse_ref(str(model)).value
    if folder is None:
        from .offline import require_hub

        require_hub(hub_id, "generator model")
    import warnings

    from diffusers import DiffusionPipeline

    try:
        with (
            warnings.catch_warnings()
        ):  # diffusers >= 0.36 renames torch_dtype to dtype; older ones lack dtype
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = DiffusionPipeline.from_pretrained(
                str(folder or hub_id), torch_dtype=dtype, **spec.get("kwargs", {})
            )
    except Exception as exc:  # noqa: BLE001 - name the model in whatever went wrong
        raise BackendError(f"generator model {model!r}: cannot load a diffusers pipeline: {exc}") from exc
    pipe = pipe.to(device)
    return pipeline_generator(pipe, spec, name=str(model))


def pipeline_generator(pipe: Any, spec: dict[str, Any], name: str = "pipeline") -> DiffusersGenerator:
    """A loaded pipeline (on its device) with the spec's resolution, steps and guidance, and its speed settings
    applied (:func:`apply_speed`; the schema's defaults where the spec has none)."""
    full = with_defaults(spec, "generator")
    speed = apply_speed(pipe, full)
    log.info("generator %s on %s: %s", name, pipe.device, describe_speed(speed))
    return DiffusersGenerator(
        pipe, full["resolution"], full["steps"], full["guidance_scale"], name=name, speed=speed
    )


# ----------------------------------------------------------------------------------------------------------
# python


@GENERATORS.register("python")
def _python(spec: dict[str, Any], device: torch.device, dtype: torch.dtype) -> Generator:
    if not spec.get("factory"):
        raise BackendError("generator: source python needs 'factory: package.module:function'")
    fn = import_factory(spec["factory"], "generator factory")
    kwargs = dict(spec.get("kwargs", {}))
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    for key, value in (("device", device), ("dtype", dtype), ("resolution", spec.get("resolution"))):
        if key in params and key not in kwargs and value is not None:
            kwargs[key] = value
    obj = fn(**kwargs)
    if hasattr(obj, "components") and callable(obj) and not hasattr(obj, "generate"):  # a diffusers pipeline
        obj = pipeline_generator(obj.to(device), spec, name=spec["factory"])
    if not isinstance(obj, Generator):
        raise BackendError(
            f"generator factory {spec['factory']!r} returned {type(obj).__name__}, which has no "
            "generate(prompts, seeds) method and resolution attribute"
        )
    return obj
