"""Config checks that JSON schema cannot express, run once when the workflow is parsed (common.smk).

They need no model loading, so a cluster user hears of a typo before any job queues:

- every number in the config is finite (YAML's ``.nan``, ``.inf``, ``-.inf`` and ``--config key=nan`` pass
  JSON schema's ``minimum``/``maximum`` comparisons);
- a model's local checkpoint file (``weights``) and the embedder's local files (``model_config``, a
  ``pretrained`` path) exist;
- a torchvision/timm/places365 ``arch`` is a name that library knows, where that library is installed where
  the workflow is parsed (otherwise the job checks it, as before);
- a path that a rule tracks as an input file (a world spec, a concept list, a ground-truth class list) holds no
  ``{name}``, which Snakemake would read as a wildcard.

What needs the model (an unknown ``layer``) or the device (a missing GPU) is still checked in the job.
This module imports no torch at import time; torchvision/timm are imported only for a model that uses them.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .backends import TORCHVISION_CLASSES, BackendError
from .backends.refs import parse_ref


class ConfigError(BackendError):
    """A config value that cannot work: the message names the key and the problem."""


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def non_finite_numbers(obj: Any, path: str = "") -> Iterator[tuple[str, float]]:
    """(key, value) of every NaN or infinite float anywhere in ``obj``; keys are dotted (``select.tau``), list
    items get ``[i]``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from non_finite_numbers(v, _key(path, str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from non_finite_numbers(v, f"{path}[{i}]")


def check_finite(config: dict[str, Any]) -> list[str]:
    """One message per key of ``config`` that holds a non-finite number."""
    return [f"config key {key}: {value} is not a finite number" for key, value in non_finite_numbers(config)]


def _local_file(ref: Any) -> str | None:
    """The local path a weights/pretrained reference names (:func:`~sieve.backends.refs.parse_ref`, the rule
    every backend uses), or None for a URL, a hub id or a weights name/tag."""
    if not isinstance(ref, str) or not ref.strip():
        return None
    try:
        parsed = parse_ref(ref, hub_ids=False)
    except BackendError:
        return None
    return parsed.value if parsed.is_local else None


def _missing_file(value: Any, key: str, what: str) -> list[str]:
    if isinstance(value, str) and value and not Path(os.path.expanduser(value)).is_file():
        return [f"config key {key}: {what} not found: {os.path.expanduser(value)}"]
    return []


def _unknown_arch(source: str, arch: str) -> str | None:
    """Why ``arch`` is not an architecture of ``source`` (None when it is, or when the library that would know
    is not installed where the workflow is parsed)."""
    module = "timm" if source == "timm" else "torchvision"
    if source == "torchvision" and arch in TORCHVISION_CLASSES:  # built from kwargs (arch: ResNet)
        return None
    if importlib.util.find_spec(module) is None:
        return None
    if source == "timm":
        import timm

        known = list(timm.list_models())
        if timm.is_model(arch):
            return None
    else:
        import torchvision

        known = list(torchvision.models.list_models())
        if arch in known:
            return None
    close = difflib.get_close_matches(arch, known, n=5)
    return f"unknown {source} arch {arch!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def trained_checkpoints(config: dict[str, Any]) -> dict[str, str]:
    """Normalised checkpoint path -> model name, for every model of the trained world's spec
    (``trained_world.spec``): files the workflow trains (rules/train.smk), so not missing when it parses."""
    from . import paths
    from .trained.params import model_names

    spec = (config.get("trained_world") or {}).get("spec", "default")
    try:
        names = model_names(spec)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"config key trained_world.spec: {exc}") from None
    return {os.path.normpath(paths.TRAINED_CHECKPOINT.format(trained=n)): n for n in names}


def trained_model_of(spec: dict[str, Any], trained: dict[str, str]) -> str | None:
    """The trained-world model whose checkpoint a ``models:`` entry loads (None for any other entry)."""
    weights = spec.get("weights")
    if spec.get("source") != "torchvision" or not isinstance(weights, str) or not weights:
        return None
    return trained.get(os.path.normpath(weights))


def check_trained_entry(name: str, spec: dict[str, Any], config: dict[str, Any], trained: str) -> list[str]:
    """A ``models:`` entry that loads a trained-world checkpoint must build the architecture it was trained
    as (arch, kwargs, num_classes, input_size of the spec's model), or its state_dict would not load."""
    from .trained.params import entry_mismatch, expected_model_entry

    spec_name = (config.get("trained_world") or {}).get("spec", "default")
    return [
        f"config key models.{name}: loads trained-world model {trained!r} (trained_world.spec {spec_name}) "
        f"but its {why}"
        for why in entry_mismatch(spec, expected_model_entry(spec_name, trained))
    ]


def check_model(name: str, spec: dict[str, Any], produced: Iterable[str] = ()) -> list[str]:
    """Problems of one ``models:`` entry that show without loading it. ``produced``: normalised paths of
    checkpoints the workflow itself makes (the trained world's), which need not exist yet."""
    where = f"models.{name}"
    source = spec.get("source")
    errors = []
    if source in ("torchvision", "timm", "places365"):
        arch = spec.get("arch", "resnet18" if source == "places365" else None)
        if not arch:
            errors.append(
                f"config key {where}.arch: source {source} needs an architecture name (e.g. resnet50)"
            )
        elif (why := _unknown_arch(source, arch)) is not None:
            errors.append(f"config key {where}.arch: {why}")
        path = _local_file(spec.get("weights"))
        if path is not None and os.path.normpath(path) not in set(produced):
            errors += _missing_file(path, f"{where}.weights", "checkpoint file")
    elif source == "python" and not spec.get("factory"):
        errors.append(f"config key {where}.factory: source python needs 'factory: package.module:function'")
    return errors


def check_embedder(spec: dict[str, Any], where: str = "embedder") -> list[str]:
    """Local files an open_clip embedder names: ``model_config`` and a ``pretrained`` that is a path."""
    if spec.get("source", "open_clip") != "open_clip":
        return []
    errors = _missing_file(spec.get("model_config"), f"{where}.model_config", "model config file")
    if (path := _local_file(spec.get("pretrained"))) is not None:
        errors += _missing_file(path, f"{where}.pretrained", "checkpoint file")
    return errors


# The start of a wildcard as Snakemake reads one in a file path (snakemake.io's WILDCARD_REGEX): ``{name}`` or
# ``{name,constraint}``. ``{}`` and braces around other text are no wildcard.
_WILDCARD = re.compile(r"\{\s*[.\w]+\s*[,}]")


def is_packaged_world(spec: Any) -> bool:
    """Whether a world spec names the packaged world (``default``, or none) rather than a file: the rule of
    sieve.synthetic.world.is_packaged, restated so that the parse does not import numpy and PIL."""
    return spec in (None, "", "default")


def tracked_input_paths(config: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, path) of every config path that a rule takes as an input file, so that editing the file reruns it:
    world specs of synthetic models and probe sets, concept lists and ground-truth class lists (the input
    functions of workflow/rules/common.smk: keep the two in step)."""
    for name, spec in sorted((config.get("models") or {}).items()):
        if spec.get("source") == "synthetic" and not is_packaged_world(spec.get("spec")):
            yield f"models.{name}.spec", spec["spec"]
        if isinstance(spec.get("ground_truth"), str):  # a published list (url + sha256) is fetched
            yield f"models.{name}.ground_truth", spec["ground_truth"]
    for name, spec in sorted((config.get("probes") or {}).items()):
        if spec.get("kind") == "synthetic" and not is_packaged_world(spec.get("spec")):
            yield f"probes.{name}.spec", spec["spec"]
    for name, spec in sorted((config.get("concept_sets") or {}).items()):
        if spec.get("path"):
            yield f"concept_sets.{name}.path", spec["path"]
        if "synthetic" in spec and not is_packaged_world(spec["synthetic"]):
            yield f"concept_sets.{name}.synthetic", spec["synthetic"]


def check_input_paths(config: dict[str, Any]) -> list[str]:
    """One message per tracked input path that holds a wildcard. Snakemake fills ``{name}`` in every input path
    with the job's wildcards and has no escape for braces there: ``{x}`` stopped the parse with a WildcardError
    naming no key, and ``{concept_set}`` silently named another file than the one the script reads."""
    errors = []
    for key, path in tracked_input_paths(config):
        if isinstance(path, str) and (match := _WILDCARD.search(path)):
            errors.append(
                f"config key {key}: the path {path!r} holds {match.group(0)!r}, which "
                "Snakemake reads as a wildcard in an input file (braces cannot be escaped there): "
                "rename the file or folder, or link it under a name without braces"
            )
    return errors


def check_config(config: dict[str, Any]) -> None:
    """Every parse-time check of a validated config; raises one :class:`ConfigError` listing all problems."""
    errors = check_finite(config) + check_input_paths(config)
    trained = trained_checkpoints(config)
    for name, spec in sorted(config.get("models", {}).items()):
        errors += check_model(name, spec, trained)
        if (model := trained_model_of(spec, trained)) is not None:
            errors += check_trained_entry(name, spec, config, model)
    errors += check_embedder(config.get("embedder") or {})
    ablate = (config.get("evaluate") or {}).get("ablate_neurons") or {}
    if isinstance(ablate, dict):
        errors += [
            f"config key evaluate.ablate_neurons.{name}: no model entry {name!r} in models: "
            f"({', '.join(sorted(config.get('models', {})))})"
            for name in sorted(ablate)
            if name not in config.get("models", {})
        ]
    for key in ("clip_model", "mpnet_model"):  # mpnet_model: a sentence model id, or an embedder spec
        spec = (config.get("evaluate") or {}).get(key)
        if isinstance(spec, dict):
            errors += check_embedder(spec, f"evaluate.{key}")
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))
