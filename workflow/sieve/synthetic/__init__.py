"""The planted-concept world: a synthetic backend whose truth is known.

A backend of every kind under the name ``synthetic`` (:mod:`.backends`, listed in the plugin table
:data:`sieve.backends.PLUGINS` and imported on first use, so that neither package imports the other's
backends at import time):

- model (``models: {x: {source: synthetic, spec: ...}}``): :class:`~.model.PlantedNet`, a conv net built
  from the spec whose last conv layer (``neurons``) holds detector, polysemantic, attribute, redundant,
  promiscuous and dead neurons;
- probe set (``probes: {x: {kind: synthetic, n_images, seed, spec}}``): rendered scenes of 0..3 objects;
- embedder (``embedder: {source: synthetic}``): :class:`~.embedder.SyntheticEmbedder`;
- generator (``generator: {source: synthetic}``): the renderer, one prototypical object per prompt;
- :func:`concept_list`: the world's concept set (``concept_sets: {x: {synthetic: default}}``).

The spec (``default.yaml`` here, or any YAML file of the same form) is the only place the world is defined.
"""

from __future__ import annotations

from typing import Any

from .world import SpecError, World, load_world, render_scene

__all__ = ["World", "SpecError", "load_world", "concept_list", "planted_truth", "scene_truth"]


def concept_list(spec: str | None = "default") -> list[str]:
    """The world's concept set: colour x shape, colours, shapes, textures and distractor words."""
    return load_world(spec).concept_list()


def planted_truth(spec: str | None = "default") -> list[dict[str, Any]]:
    """One row per neuron of the analysed layer: neuron, kind, planted concepts."""
    return [
        {"neuron": n.index, "kind": n.kind, "concepts": list(n.concepts)} for n in load_world(spec).neurons
    ]


def scene_truth(spec: str | None, seed: int, index: int) -> list[dict[str, Any]]:
    """The objects of probe scene ``index`` (concept, colour, shape, texture, box [top, left, size])."""
    return render_scene(load_world(spec), seed, index)[1]
