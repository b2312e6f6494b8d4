"""One parser for the references a config gives to weights, checkpoints and pipelines: hub id or local file?

Every backend (model weights, the open_clip embedder's ``pretrained``, the diffusers generator's ``model``,
``evaluate.mpnet_model``), the cache keys (:func:`sieve.io.local_file_fingerprints`) and ``sieve.prefetch``
decide it here, with :func:`parse_ref`, so that a string means the same thing everywhere.

Explicit prefixes, as open_clip writes them, say it outright:

- ``hf-hub:<owner/name>``   a Hugging Face hub repository;
- ``local-dir:<path>``      a local folder (a diffusers pipeline, a sentence-transformers model);
- ``file:<path>``           a local file (a checkpoint).

Without a prefix the string is read by its shape, as every loader did before the prefixes existed:

1. ``scheme://...`` is a URL (checked first: ``file:///x.pth`` is a URL, not the ``file:`` prefix);
2. an existing path (after ``~`` expansion) is local;
3. a string that can only be a path is local even if it does not exist (the loader then says "not found"):
   it starts with ``/``, ``./``, ``../`` or ``~``, holds a backslash, is ``.``/``..``, ends with a checkpoint
   suffix, or holds a ``/`` where names cannot (``hub_ids=False``: torchvision weights names, open_clip tags)
   or more than one ``/`` where hub ids can (``owner/name``);
4. anything else is a name: a hub id where the consumer takes hub ids, else the library's own weights name or
   pretrained tag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import BackendError

RefKind = Literal["url", "path", "hub", "name"]
PREFIXES: dict[str, tuple[RefKind, str | None]] = {
    "hf-hub:": ("hub", None),
    "local-dir:": ("path", "dir"),
    "file:": ("path", "file"),
}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".safetensors", ".npz", ".ckpt")


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``kind``: ``url``, ``path`` (local), ``hub`` (a hub repository) or ``name`` (a
    library's own weights name or tag); ``value``: the URL, the ``~``-expanded path, the hub id or the name;
    ``want``: ``dir`` or ``file`` when a prefix said which; ``explicit``: written with a prefix."""

    kind: RefKind
    value: str
    raw: str
    want: str | None = None
    explicit: bool = False

    @property
    def is_local(self) -> bool:
        return self.kind == "path"

    @property
    def path(self) -> Path:
        """The local path (only for ``kind == "path"``)."""
        if self.kind != "path":
            raise BackendError(f"{self.raw!r} is a {self.kind}, not a local path")
        return Path(self.value)

    def existing_file(self, what: str) -> Path:
        """The local file, or a :class:`BackendError` naming ``what`` (the config key) if it is missing."""
        path = self.path
        if not path.is_file():
            raise BackendError(f"{what}: file not found: {path}" + (" (a folder)" if path.is_dir() else ""))
        return path

    def existing_dir(self, what: str) -> Path:
        """The local folder, or a :class:`BackendError` naming ``what`` (the config key) if it is missing."""
        path = self.path
        if path.is_dir():
            return path
        if path.exists():
            raise BackendError(f"{what} {self.raw!r} is a file, not a folder")
        raise BackendError(f"{what}: folder does not exist: {self.raw!r}")


def looks_like_path(ref: str, hub_ids: bool = True) -> bool:
    """Whether an unprefixed ``ref`` can only be a local path (rule 3 of the module docstring)."""
    if ref.startswith(("/", "./", "../", "~")) or "\\" in ref or ref in (".", ".."):
        return True
    if ref.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    return ref.count("/") > 1 if hub_ids else "/" in ref


def parse_ref(ref: str, hub_ids: bool = True) -> Ref:
    """Parse a reference (see the module docstring). ``hub_ids``: whether names of the consumer are hub ids
    (``owner/name``: generator models, sentence models) or names without a ``/`` (weights names, tags)."""
    if not isinstance(ref, str) or not ref.strip():
        raise BackendError(f"empty or non-string reference {ref!r}")
    if "://" in ref:  # before the prefixes: ``file:///x.pth`` stays a URL
        return Ref("url", ref, ref)
    for prefix, (kind, want) in PREFIXES.items():
        if ref.startswith(prefix):
            rest = ref[len(prefix) :]
            if not rest:
                raise BackendError(f"reference {ref!r}: nothing after {prefix!r}")
            value = os.path.expanduser(rest) if kind == "path" else rest
            return Ref(kind, value, ref, want, explicit=True)
    expanded = os.path.expanduser(ref)
    if Path(expanded).exists() or looks_like_path(ref, hub_ids):
        return Ref("path", expanded, ref)
    return Ref("hub" if hub_ids else "name", ref, ref)
