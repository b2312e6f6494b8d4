"""The planted world as a backend of every kind: model, image set, generator and embedder (``synthetic``).

Not registered with decorators: :data:`sieve.backends.PLUGINS` names these functions and each registry imports
this module the first time a config asks for ``synthetic``, so ``sieve.backends`` never imports the world. torch is
imported by the backends that compute (model, generator, embedder), not by the image set: a job that only draws
the probe images (the neuron grids) runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..backends import BackendError
from ..backends.imagesets import ImageSet
from ..backends.preprocess import Preprocess
from ..config import schema_default
from .world import SpecError, World, load_world, render_prompt, render_scene

if TYPE_CHECKING:
    import torch


def _world(spec: dict[str, Any] | None, what: str) -> World:
    try:
        return load_world((spec or {}).get("spec"))
    except SpecError as exc:
        raise BackendError(f"{what}: {exc}") from None


def model(spec: dict[str, Any]) -> tuple[torch.nn.Module, Preprocess]:
    from .model import build_model

    model, pre = build_model(_world(spec, "models: source synthetic"))
    return model, Preprocess.coerce(pre)


def image_set(name: str, spec: dict[str, Any]) -> ImageSet:
    world = _world(spec, f"probes: {name}")
    n = spec.get("n_images", 600)
    if not isinstance(n, int) or n < 1:
        raise BackendError(f"probes: {name}: n_images must be a positive integer, got {n!r}")
    seed = int(spec.get("seed", schema_default("probes.*.seed")))
    limit = spec.get("limit")
    if limit:
        n = min(n, int(limit))
    counts = [len(render_scene(world, seed, i)[1]) for i in range(n)]
    classes = ["empty"] + [f"{k} object{'s' if k > 1 else ''}" for k in range(1, world.max_objects + 1)]

    def loader(i: int) -> Image.Image:
        return Image.fromarray(render_scene(world, seed, i)[0])

    return ImageSet(
        name,
        root="synthetic",
        paths=[f"scene_{i:05d}.png" for i in range(n)],
        labels=counts,
        classes=classes,
        loader=loader,
        info={"kind": "synthetic", "spec": world.source, "seed": seed, "n_images": n},
    )


class SyntheticGenerator:
    """The renderer as a text-to-image generator: deterministic per (prompt, seed), never an error."""

    def __init__(
        self, world: World, resolution: int | None = None, device: torch.device | None = None
    ) -> None:
        import torch

        self.world = world
        self.resolution = int(resolution or world.image_size)
        self.device = device or torch.device("cpu")

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        import torch

        if len(prompts) != len(seeds):
            raise ValueError(f"generate: {len(prompts)} prompts but {len(seeds)} seeds")
        if not prompts:
            return torch.zeros(0, 3, self.resolution, self.resolution, device=self.device)
        imgs = [
            render_prompt(self.world, str(p), int(s), self.resolution)[0]
            for p, s in zip(prompts, seeds, strict=True)
        ]
        x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
        return x.to(self.device)


def generator(spec: dict[str, Any], device: torch.device, dtype: torch.dtype) -> SyntheticGenerator:
    world = _world(spec, "generator: source synthetic")
    # the world draws at its own image_size (generator.resolution, 512 by default, is for diffusion models)
    return SyntheticGenerator(world, None, device)


def embedder(spec: dict[str, Any], device: torch.device) -> Any:
    from .embedder import SyntheticEmbedder

    return SyntheticEmbedder(_world(spec, "embedder: source synthetic"))
