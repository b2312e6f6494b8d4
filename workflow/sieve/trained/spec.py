"""The trained world's spec (a user-swappable YAML file, like the planted world's) and its validation.

Keys a user's spec leaves out come from the packaged ``default.yaml`` (the ``pictures`` and ``training``
sections key by key; ``models``, when given, replaces the default's models whole). Every wrong key, type or
value raises :class:`TrainedSpecError` naming the file, the key and the problem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..backends import TORCHVISION_CLASSES
from ..synthetic.world import SpecError, World, load_world

MODEL_KEYS = ("arch", "kwargs", "steps", "batch_size", "lr", "weight_decay", "warmup", "min_accuracy")


class TrainedSpecError(ValueError):
    """The trained-world spec is wrong: the message names the file, the key and the problem."""


@dataclass(frozen=True)
class ModelSettings:
    """One model of the trained world: a torchvision class with its kwargs, and how it is optimised."""

    name: str
    arch: str
    kwargs: dict[str, Any]
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: int
    min_accuracy: float


@dataclass(frozen=True)
class TrainedWorld:
    """A parsed, validated trained-world spec, with the planted world it draws from."""

    source: str
    world: World
    world_spec: str
    classes: tuple[str, ...]
    main_sizes: tuple[int, ...]
    clutter: int
    clutter_sizes: tuple[int, ...]
    n_train: int
    n_test: int
    picture_seed: int
    seed: int
    learned_recall: float
    models: dict[str, ModelSettings]
    raw: dict[str, Any] = field(compare=False, repr=False, default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def model_kwargs(self, name: str) -> dict[str, Any]:
        """The class's constructor kwargs as trained: the spec's, plus a ViT's image_size (the world's)."""
        m = self.models[name]
        kw = dict(m.kwargs)
        if m.arch == "VisionTransformer":
            kw["image_size"] = self.world.image_size
        return kw


def default_spec_path() -> str:
    return str(resources.files("sieve.trained").joinpath("default.yaml"))


def resolve_trained_spec(spec: str | os.PathLike[str] | None) -> str:
    """``None`` or ``"default"`` -> the packaged default.yaml; otherwise a path that must exist."""
    if spec in (None, "", "default"):
        return default_spec_path()
    path = Path(os.path.expanduser(str(spec)))
    if not path.is_file():
        raise TrainedSpecError(f"trained world spec not found: {path} (use 'default' for the packaged one)")
    return str(path)


def load_trained_world(
    spec: str | os.PathLike[str] | dict[str, Any] | None = None, world: World | None = None
) -> TrainedWorld:
    """Read and validate a trained-world spec (a path, ``"default"``/None, or a parsed dict).

    ``world`` overrides the spec's ``world:`` (tests pass a small world built from a dict)."""
    if isinstance(spec, dict):
        return _parse(spec, "<dict>", world)
    path = resolve_trained_spec(spec)
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise TrainedSpecError(f"trained world spec {path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise TrainedSpecError(
            f"trained world spec {path}: must be a mapping of keys, got {type(raw).__name__}"
        )
    return _parse(raw, path, world)


def _err(src: str, key: str, msg: str) -> TrainedSpecError:
    return TrainedSpecError(f"trained world spec {src}: {key}: {msg}")


def _section(raw: dict[str, Any], default: dict[str, Any], key: str, src: str) -> dict[str, Any]:
    """``raw[key]`` over ``default[key]``, key by key, with unknown keys refused."""
    given = raw.get(key) or {}
    if not isinstance(given, dict):
        raise _err(src, key, f"must be a mapping, got {given!r}")
    unknown = sorted(set(given) - set(default[key]))
    if unknown:
        raise _err(src, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(default[key]))})")
    return {**default[key], **given}


def _int(src: str, key: str, value: Any, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _err(src, key, f"must be an integer {rng}, got {value!r}")
    return value


def _num(src: str, key: str, value: Any, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise _err(src, key, f"must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _sizes(src: str, key: str, value: Any, image_size: int) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(s, int) and s % 2 == 1 and 5 <= s <= image_size - 4 for s in value)
    ):
        raise _err(
            src, key, f"must be a list of odd integers in 5..{image_size - 4} (image_size - 4), got {value!r}"
        )
    return tuple(value)


def _parse(raw: dict[str, Any], src: str, world: World | None) -> TrainedWorld:
    with open(default_spec_path(), encoding="utf-8") as fh:
        default: dict[str, Any] = yaml.safe_load(fh)
    unknown = sorted(set(raw) - set(default))
    if unknown:
        raise _err(src, unknown[0], f"unknown key (known: {', '.join(sorted(default))})")
    world_spec = str(raw.get("world", default["world"]))
    if world is None:
        if world_spec not in ("default", "") and src != "<dict>" and not os.path.isabs(world_spec):
            world_spec = str(Path(src).parent / world_spec)  # relative to the trained spec's own folder
        try:
            world = load_world(world_spec)
        except SpecError as exc:
            raise _err(src, "world", str(exc)) from None
    else:
        world_spec = world.source

    classes_raw = raw.get("classes", default["classes"])
    if classes_raw == "auto":
        classes = tuple(world.object_concepts)
    else:
        objects = world.object_concepts
        if not isinstance(classes_raw, list) or len(classes_raw) < 2:
            raise _err(
                src, "classes", f"must be 'auto' or a list of at least 2 concepts, got {classes_raw!r}"
            )
        bad = [c for c in classes_raw if c not in objects]
        if bad:
            raise _err(
                src,
                "classes",
                f"{bad[0]!r} is not a colour x shape or texture of the world (e.g. {objects[0]!r})",
            )
        if len(set(classes_raw)) != len(classes_raw):
            raise _err(src, "classes", "lists a concept twice")
        classes = tuple(classes_raw)

    pic = _section(raw, default, "pictures", src)
    main_sizes = _sizes(src, "pictures.main_sizes", pic["main_sizes"], world.image_size)
    clutter_sizes = _sizes(src, "pictures.clutter_sizes", pic["clutter_sizes"], world.image_size)
    if max(clutter_sizes) >= min(main_sizes):
        raise _err(
            src,
            "pictures.clutter_sizes",
            f"every clutter size must be smaller than every main size "
            f"({min(main_sizes)}), or the picture's class would be ambiguous",
        )
    train = _section(raw, default, "training", src)

    models_raw = raw.get("models", default["models"])
    if not isinstance(models_raw, dict) or not models_raw:
        raise _err(src, "models", "must be a non-empty mapping name: {arch, kwargs, steps, ...}")
    floor = _num(src, "training.min_accuracy", train["min_accuracy"], 0.0, 1.0)
    models = {name: _model(src, name, m, floor) for name, m in models_raw.items()}
    return TrainedWorld(
        source=src,
        world=world,
        world_spec=world_spec,
        classes=classes,
        main_sizes=main_sizes,
        clutter=_int(src, "pictures.clutter", pic["clutter"], 0, 8),
        clutter_sizes=clutter_sizes,
        n_train=_int(src, "pictures.train", pic["train"], 1),
        n_test=_int(src, "pictures.test", pic["test"], 1),
        picture_seed=_int(src, "pictures.seed", pic["seed"], 0),
        seed=_int(src, "training.seed", train["seed"], 0),
        learned_recall=_num(src, "training.learned_recall", train["learned_recall"], 0.0, 1.0),
        models=models,
        raw=raw,
    )


def _model(src: str, name: str, m: Any, floor: float) -> ModelSettings:
    key = f"models.{name}"
    if not isinstance(name, str) or not name.isidentifier():
        raise _err(src, key, "model names are identifiers (letters, digits, _)")
    if not isinstance(m, dict):
        raise _err(src, key, f"must be a mapping {{arch, kwargs, steps, ...}}, got {m!r}")
    unknown = sorted(set(m) - set(MODEL_KEYS))
    if unknown:
        raise _err(src, f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(MODEL_KEYS)})")
    if m.get("arch") not in TORCHVISION_CLASSES:
        raise _err(
            src,
            f"{key}.arch",
            f"must be one of torchvision's classes {', '.join(TORCHVISION_CLASSES)}, got {m.get('arch')!r}",
        )
    kwargs = m.get("kwargs") or {}
    if not isinstance(kwargs, dict) or {"num_classes", "image_size"} & set(kwargs):
        raise _err(
            src,
            f"{key}.kwargs",
            "must be a mapping without num_classes and image_size (the classes and the world set them)",
        )
    return ModelSettings(
        name=name,
        arch=m["arch"],
        kwargs=dict(kwargs),
        steps=_int(src, f"{key}.steps", m.get("steps"), 1),
        batch_size=_int(src, f"{key}.batch_size", m.get("batch_size"), 1),
        lr=_num(src, f"{key}.lr", m.get("lr"), 1e-6, 1.0),
        weight_decay=_num(src, f"{key}.weight_decay", m.get("weight_decay", 0.0), 0.0, 1.0),
        warmup=_int(src, f"{key}.warmup", m.get("warmup", 0), 0),
        min_accuracy=_num(src, f"{key}.min_accuracy", m.get("min_accuracy", floor), 0.0, 1.0),
    )
