"""Config defaults, read from the one place that holds them: ``workflow/schemas/config.schema.yaml``.

The workflow validates the config with the schema's ``default:`` values filled in, so stages called by a rule
always get every key. A library function called directly (a test, a notebook) that needs a default takes it
from here instead of retyping it, so code and schema cannot drift apart (``generator.shards`` was once 1 in
code and 8 in the schema).

Key paths are dotted: ``"generator.shards"``; ``*`` steps into a mapping of named entries, e.g.
``"models.*.dtype"`` (the schema's ``additionalProperties``).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class SchemaKeyError(KeyError):
    """A key path the schema does not define, or defines without a default."""


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The workflow's config schema (next to the package, in ``workflow/schemas/``)."""
    if not SCHEMA_PATH.is_file():
        raise FileNotFoundError(
            f"sieve.config: the config schema {SCHEMA_PATH} is missing; sieve reads its defaults "
            "from the workflow checkout (install it editable: pip install -e .)"
        )
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        if not ref.startswith("#/"):
            raise SchemaKeyError(f"schema reference {ref!r} is not local")
        target: Any = schema()
        for part in ref[2:].split("/"):
            target = target[part]
        return target
    return node


def schema_node(path: str) -> dict[str, Any]:
    """The schema of a dotted key path (``*`` = any entry of a named mapping)."""
    node = schema()
    for key in path.split("."):
        node = _resolve(node)
        try:
            node = node["additionalProperties"] if key == "*" else node["properties"][key]
        except (KeyError, TypeError):
            raise SchemaKeyError(f"config key {path!r} is not in {SCHEMA_PATH.name} (at {key!r})") from None
    return _resolve(node)


def schema_default(path: str) -> Any:
    """The schema's ``default:`` of a dotted key path, e.g. ``schema_default("generator.shards") == 8``."""
    node = schema_node(path)
    if "default" not in node:
        raise SchemaKeyError(f"config key {path!r} has no default in {SCHEMA_PATH.name}")
    return copy.deepcopy(node["default"])


def with_defaults(spec: dict[str, Any] | None, path: str) -> dict[str, Any]:
    """``spec`` (one config section, e.g. ``generator`` or one ``models.*`` entry) with the schema's defaults
    for the keys it lacks, as the workflow's validation fills them (one level deep)."""
    props = schema_node(path).get("properties", {})
    out = {
        key: copy.deepcopy(_resolve(sub)["default"])
        for key, sub in props.items()
        if "default" in _resolve(sub)
    }
    out.update(spec or {})
    return out


# How a shell user writes a boolean: `--config offline=true` reaches the config as the string "true" (and
# `offline=1` as the integer 1), which the schema's `type: boolean` would reject.
BOOLEAN_SPELLINGS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _boolean(value: Any) -> Any:
    """``value`` as a bool when it is one of :data:`BOOLEAN_SPELLINGS` (any case) or the integer 0 or 1."""
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_SPELLINGS:
        return BOOLEAN_SPELLINGS[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    return value


def coerce_booleans(cfg: dict[str, Any], node: dict[str, Any] | None = None) -> None:
    """Turn the spellings of a boolean into bools, in place, at every key the schema types ``boolean`` or whose
    ``enum`` holds ``true`` (at any depth, named entries such as ``probes.*.download`` included), before
    validation. Other values are left as they are, for the schema to reject with its own message."""
    node = _resolve(schema() if node is None else node)
    props, extra = node.get("properties", {}), node.get("additionalProperties")
    for key, value in cfg.items():
        sub = props.get(key, extra if isinstance(extra, dict) else None)
        if sub is None:
            continue
        sub = _resolve(sub)
        if sub.get("type") == "boolean" or any(v is True for v in sub.get("enum", ())):
            cfg[key] = _boolean(value)  # a boolean, or an enum with true and false (`auto | true | false`)
        elif isinstance(value, dict):
            coerce_booleans(value, sub)
