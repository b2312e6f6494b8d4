"""What the workflow reads of the trained-world spec when it parses: model names, the training rule's params,
and the ``models:`` entry each trained checkpoint must be loaded with.

This module imports only ``yaml`` (the Snakefile imports it; torch, numpy and PIL stay in the jobs). It reads
the spec as :mod:`.spec` does (a user's sections over the packaged default's, key by key; ``models`` whole)
without validating it: the training job does (:func:`~.spec.load_trained_world`), with an error naming the key.

Caching: the params of a training job are the *content* of everything that changes its weights (the world
spec the pictures are drawn from, the classes, the picture settings, the seed and that model's own settings),
never a path. So editing a value of the spec retrains exactly the models it concerns, editing a comment or
moving the clone retrains nothing, and another model's settings never retrain this one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

PACKAGE_DIR = Path(__file__).resolve().parents[1]
PACKAGED_TRAINED_SPEC = PACKAGE_DIR / "trained" / "default.yaml"
PACKAGED_WORLD_SPEC = PACKAGE_DIR / "synthetic" / "default.yaml"
# The planted model's neurons draw nothing: editing them retrains no model of the trained world.
WORLD_KEYS_NOT_IN_PICTURES = ("neurons",)


def _packaged(spec: Any) -> bool:
    return spec in (None, "", "default")


def spec_file(spec: str | None) -> Path:
    """The trained-world spec file a config names (``default``/None: the packaged one)."""
    return PACKAGED_TRAINED_SPEC if _packaged(spec) else Path(os.path.expanduser(str(spec)))


def _read(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"{what} not found: {path} (use 'default' for the packaged one)")
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    if not isinstance(raw, dict):
        raise ValueError(f"{what} {path}: must be a mapping of keys")
    return raw


def merged_spec(spec: str | None) -> dict[str, Any]:
    """The spec with the packaged default's keys filled in (sections key by key, ``models`` whole), and the
    world spec it draws from parsed under ``world_content``."""
    default = _read(PACKAGED_TRAINED_SPEC, "trained world spec")
    path = spec_file(spec)
    raw = default if path == PACKAGED_TRAINED_SPEC else _read(path, "trained world spec (trained_world.spec)")
    out: dict[str, Any] = {}
    for key in ("world", "classes", "models"):
        out[key] = raw.get(key, default[key])
    for key in ("pictures", "training"):
        given = raw.get(key) or {}
        out[key] = {**default[key], **(given if isinstance(given, dict) else {})}
    world = out["world"]
    packaged_world = _read(PACKAGED_WORLD_SPEC, "packaged world spec")
    if _packaged(world):
        out["world_content"] = packaged_world
        return out
    world_path = Path(os.path.expanduser(str(world)))
    if not world_path.is_absolute():  # relative to the trained spec's own folder, as spec.py reads it
        world_path = path.parent / world_path
    # keys a world spec leaves out come from the packaged world's, top-level key by key (as load_world reads it)
    out["world_content"] = {**packaged_world, **_read(world_path, f"world spec of trained world {path}")}
    return out


def model_names(spec: str | None) -> list[str]:
    """The names of the spec's models (the ``{trained}`` wildcard of the training rule)."""
    models = merged_spec(spec)["models"]
    return sorted(models) if isinstance(models, dict) else []


def picture_params(spec: str | None) -> dict[str, Any]:
    """What changes the trained world's pictures: the world's content, the classes and the picture settings."""
    m = merged_spec(spec)
    world = {k: v for k, v in m["world_content"].items() if k not in WORLD_KEYS_NOT_IN_PICTURES}
    return {"world": world, "classes": m["classes"], "pictures": m["pictures"]}


def training_params(spec: str | None, name: str) -> dict[str, Any]:
    """What changes model ``name``'s weights (and its recorded accuracy): the pictures, the training section
    and the model's own settings; not the other models'."""
    m = merged_spec(spec)
    return {**picture_params(spec), "training": m["training"], "model": {name: m["models"].get(name)}}


def n_classes(merged: dict[str, Any]) -> int:
    """The number of classes: the listed ones, or (``auto``) the world's colour x shape concepts and textures."""
    classes = merged["classes"]
    if isinstance(classes, list):
        return len(classes)
    world = merged["world_content"]
    return len(world.get("colours") or {}) * len(world.get("shapes") or []) + len(world.get("textures") or [])


def expected_model_entry(spec: str | None, name: str) -> dict[str, Any]:
    """The keys a ``models:`` entry must give to load trained model ``name``'s checkpoint through ``source:
    torchvision`` (what :func:`~.train.model_spec` writes into the model's training.json)."""
    m = merged_spec(spec)
    model = m["models"][name]
    kwargs = dict(model.get("kwargs") or {})
    size = int(m["world_content"].get("image_size", 64))
    if model.get("arch") == "VisionTransformer":
        kwargs["image_size"] = size
    return {"arch": model.get("arch"), "kwargs": kwargs, "num_classes": n_classes(m), "input_size": size}


def entry_mismatch(entry: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """The keys of a ``models:`` entry that differ from what the trained checkpoint was built with."""
    return [
        f"{key} is {entry.get(key)!r}, the trained model has {want!r}"
        for key, want in expected.items()
        if entry.get(key, {} if key == "kwargs" else None) != want
    ]
