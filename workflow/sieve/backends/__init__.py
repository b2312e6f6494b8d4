"""Backends: one registry per kind, keyed by the config's ``source`` (or ``kind`` for probe sets).

- :mod:`.models`     target vision models (torchvision, timm, places365, python, synthetic)
- :mod:`.imagesets`  image sets the probe stage reads (imagefolder, filelist, places365, imagenette, synthetic)
- :mod:`.embedders`  CLIP-like image/text embedders (open_clip, python, synthetic)
- :mod:`.generators` text-to-image generators (diffusers, python, synthetic)

Backends that live in another package (the synthetic world) are listed in one explicit table, :data:`PLUGINS`,
and imported the first time a config names them: this package never imports them, they import it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


# Spec keys that change how fast a job runs or what else it feeds, never an activation or an embedding: the
# params that trigger reruns (common.smk) and the content-addressed cache keys (verify, hypothesize) omit them.
MODEL_KEYS_NOT_IN_ACTIVATIONS = ("ground_truth", "batch_size")
EMBEDDER_KEYS_NOT_IN_EMBEDDINGS = ("batch_size",)


def activation_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A model spec without the keys that change no activation."""
    return {k: v for k, v in spec.items() if k not in MODEL_KEYS_NOT_IN_ACTIVATIONS}


def embedding_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """An embedder spec without the keys that change no embedding."""
    return {k: v for k, v in spec.items() if k not in EMBEDDER_KEYS_NOT_IN_EMBEDDINGS}


# torchvision's own model classes that ``source: torchvision`` builds from ``kwargs`` (``arch: ResNet``), beside
# the builder names torchvision lists (``arch: resnet50``). Here, not in models.py: the parse-time config check
# reads it without importing torch.
TORCHVISION_CLASSES = ("ResNet", "VisionTransformer")


class BackendError(ValueError):
    """A backend could not be built from its config: the message names the key and the problem."""


# Backends defined outside this package: registry kind -> name -> "module:function", imported on first use.
PLUGINS: dict[str, dict[str, str]] = {
    "model": {"synthetic": "sieve.synthetic.backends:model"},
    "probe set": {"synthetic": "sieve.synthetic.backends:image_set"},
    "embedder": {"synthetic": "sieve.synthetic.backends:embedder"},
    "generator": {"synthetic": "sieve.synthetic.backends:generator"},
}


class Registry:
    """name -> builder function, filled with the ``register`` decorator and, on first use, from :data:`PLUGINS`."""

    def __init__(self, kind: str, key: str = "source") -> None:
        self.kind = kind
        self.key = key
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self._builders[name] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders and name in PLUGINS.get(self.kind, {}):
            self._builders[name] = import_factory(PLUGINS[self.kind][name], f"{self.kind} plugin {name!r}")
        try:
            return self._builders[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise BackendError(f"unknown {self.kind} {self.key} {name!r} (known: {known})") from None

    def names(self) -> list[str]:
        """Every name this registry can build: registered ones and its plugins (not imported yet)."""
        return sorted({*self._builders, *PLUGINS.get(self.kind, {})})


def import_factory(ref: str, what: str = "factory") -> Callable[..., Any]:
    """Import ``"package.module:function"``."""
    if ":" not in ref:
        raise BackendError(f"{what} {ref!r} must look like 'package.module:function'")
    mod_name, fn_name = ref.split(":", 1)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise BackendError(f"{what} {ref!r}: cannot import module {mod_name!r}: {exc}") from exc
    try:
        return getattr(module, fn_name)
    except AttributeError:
        raise BackendError(f"{what} {ref!r}: module {mod_name!r} has no attribute {fn_name!r}") from None
