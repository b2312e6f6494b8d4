"""Concept sets: reading, cleaning and hashing.

A concept set comes from one of three sources (config ``concept_sets: {name: ...}``):

- ``url`` + ``sha256``: fetched once into ``resources/concepts/{name}.txt`` and checked; a checksum mismatch
  stops with an error naming both digests, and the bad download is not kept;
- ``path``: a local UTF-8 text file, one concept per line;
- ``synthetic``: the planted world's own vocabulary, ``sieve.synthetic.concept_list(spec)``.

Cleaning: control characters that are not whitespace (NUL, ESC, DEL, the C1 controls) are removed and the
concepts that held any are counted (``n_control`` in ``concepts.json`` when there are some); surrounding
whitespace is stripped and inner runs of whitespace become one space; blank lines are dropped; duplicates (the same text after that normalisation, case-sensitive) are removed, keeping the first,
and counted; an empty set is an error. Lines are split on ``\\n`` only (``\\r\\n`` is fine), a UTF-8 BOM is
ignored, and a file that is not UTF-8 is an error naming the file and the byte offset.

Concept text is untrusted free text (unicode, quotes, ``../../etc/passwd``, ``$(rm -rf ~)``, very long lines):
it never becomes a path, a wildcard value or a shell word. Every concept is identified by
:func:`concept_id`, the first 16 hex digits of the SHA-256 of its UTF-8 text.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .io import atomic_path, sha256_file

log = logging.getLogger(__name__)

LONG_CONCEPT = 300  # characters; longer concepts are kept but logged (CLIP truncates its tokens anyway)
_WS = re.compile(r"\s+")
# Unicode category Cc less the characters \s matches (tab, newlines, form feed, \x1c-\x1f, \x85): those
# become spaces instead
_CONTROL = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


class ConceptSetError(ValueError):
    """A concept set cannot be used: the message names the set, its source and the problem."""


def concept_id(text: str) -> str:
    """Stable id of a concept: the first 16 hex digits of sha256(text as UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalize_concept(line: str) -> str:
    return _WS.sub(" ", line.replace("\ufeff", "")).strip()


def strip_control(line: str) -> tuple[str, bool]:
    """``line`` without its non-whitespace control characters, and whether it held any. They would reach
    ``ar.csv``, the report and the embedders' tokenisers raw (a NUL truncates a C string)."""
    stripped = _CONTROL.sub("", line)
    return stripped, stripped != line


@dataclass
class CleanedConcepts:
    concepts: list[str]
    n_raw: int
    n_blank: int
    n_duplicates: int
    n_control: int = 0  # lines that held control characters (removed; the rest of the line is kept)


def clean_concepts(lines: list[str]) -> CleanedConcepts:
    """Remove control characters, then drop blank lines and duplicates (keeping the first), in order."""
    seen: set[str] = set()
    out: list[str] = []
    n_blank = n_dup = n_control = 0
    for raw in lines:
        if not isinstance(raw, str):
            raise ConceptSetError(f"a concept must be a string, got {type(raw).__name__}: {raw!r}")
        raw, had_control = strip_control(raw)
        n_control += had_control
        text = normalize_concept(raw)
        if not text:
            n_blank += 1
        elif text in seen:
            n_dup += 1
        else:
            seen.add(text)
            out.append(text)
    return CleanedConcepts(out, len(lines), n_blank, n_dup, n_control)


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """Lines of a UTF-8 text file (split on newlines only; a final newline ends the last line)."""
    p = Path(path)
    if not p.is_file():
        raise ConceptSetError(f"concept list not found: {p}")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConceptSetError(
            f"concept list {p} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    if text == "":
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def fetch_concept_list(
    url: str, sha256: str, dest: str | os.PathLike[str], timeout: float = 60.0, what: str = "concept list"
) -> Path:
    """Download ``url`` into ``dest`` once and check its SHA-256; a cached file with the right digest is
    reused, a wrong download is removed and raises :class:`ConceptSetError`. ``what`` names the file in
    messages (``concept list``, ``class list``)."""
    dest = Path(dest)
    if dest.is_file() and sha256_file(dest) == sha256:
        return dest
    from .backends.offline import require_online

    require_online(url, what)
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:  # noqa: S310
                while chunk := resp.read(1 << 20):
                    fh.write(chunk)
        except OSError as exc:
            raise ConceptSetError(f"cannot fetch {what} {url}: {exc}") from exc
        got = sha256_file(tmp)
        if got != sha256:
            raise ConceptSetError(
                f"checksum mismatch for {what} {url}: expected sha256 {sha256}, got {got}; "
                "the download was discarded (fix the url or the sha256 in the config)"
            )
    log.info("fetched %s %s into %s", what, url, dest)
    return dest


def synthetic_concepts(spec: str) -> list[str]:
    """The synthetic world's vocabulary, with a clear error where that world is not available."""
    try:
        synthetic = importlib.import_module("sieve.synthetic")
    except ImportError as exc:
        raise ConceptSetError(
            f"concept set source 'synthetic: {spec}' needs the synthetic world (sieve.synthetic), "
            f"which cannot be imported: {exc}"
        ) from exc
    fn = getattr(synthetic, "concept_list", None)
    if not callable(fn):
        raise ConceptSetError(
            f"concept set source 'synthetic: {spec}': sieve.synthetic has no concept_list(spec) function"
        )
    try:
        concepts = fn(spec)
    except (ValueError, OSError) as exc:  # e.g. the spec file is missing or malformed: say which concept set
        raise ConceptSetError(str(exc)) from exc
    if not isinstance(concepts, (list, tuple)):
        raise ConceptSetError(
            f"sieve.synthetic.concept_list({spec!r}) returned {type(concepts).__name__}, "
            "not a list of strings"
        )
    return list(concepts)


def describe_source(spec: dict[str, Any]) -> str:
    if "url" in spec:
        return f"url {spec['url']}"
    if "path" in spec:
        return f"path {spec['path']}"
    if "synthetic" in spec:
        return f"synthetic {spec['synthetic']}"
    raise ConceptSetError(f"concept set needs one of url+sha256, path or synthetic, got keys {sorted(spec)}")


def load_concept_set(
    name: str,
    spec: dict[str, Any],
    resources_dir: str | os.PathLike[str] = "resources/concepts",
) -> dict[str, Any]:
    """Config ``concept_sets.{name}`` -> the content of ``concepts.json`` (see the module docstring)."""
    source = describe_source(spec)
    try:
        if "url" in spec:
            if "sha256" not in spec:
                raise ConceptSetError("a url needs its sha256")
            path = fetch_concept_list(spec["url"], spec["sha256"], Path(resources_dir) / f"{name}.txt")
            lines = read_lines(path)
        elif "path" in spec:
            lines = read_lines(os.path.expanduser(spec["path"]))
        else:
            lines = synthetic_concepts(spec["synthetic"])
        cleaned = clean_concepts(lines)
    except ConceptSetError as exc:
        raise ConceptSetError(f"concept set {name!r} ({source}): {exc}") from None
    if not cleaned.concepts:
        raise ConceptSetError(
            f"concept set {name!r} ({source}) is empty: {cleaned.n_raw} lines, {cleaned.n_blank} blank, "
            f"{cleaned.n_duplicates} duplicates"
        )
    ids = [concept_id(t) for t in cleaned.concepts]
    if len(set(ids)) != len(ids):  # 64-bit hash collision between different texts: never silently merge
        raise ConceptSetError(f"concept set {name!r}: two different concepts share a 16-hex id")
    n_long = sum(len(t) > LONG_CONCEPT for t in cleaned.concepts)
    if n_long:
        log.warning(
            "concept set %s: %d concepts are longer than %d characters (kept; CLIP truncates them)",
            name,
            n_long,
            LONG_CONCEPT,
        )
    if cleaned.n_duplicates or cleaned.n_blank or cleaned.n_control:
        log.info(
            "concept set %s: %d lines, %d blank dropped, %d duplicates removed, %d with control characters "
            "removed",
            name,
            cleaned.n_raw,
            cleaned.n_blank,
            cleaned.n_duplicates,
            cleaned.n_control,
        )
    counts = {"n_raw": cleaned.n_raw, "n_blank": cleaned.n_blank, "n_duplicates": cleaned.n_duplicates}
    if cleaned.n_control:  # only when there were some: concepts.json of a clean list is as before
        counts["n_control"] = cleaned.n_control
    return {
        "concept_set": name,
        "source": source,
        **counts,
        "concepts": [{"id": i, "text": t} for i, t in zip(ids, cleaned.concepts, strict=True)],
    }
