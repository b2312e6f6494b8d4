"""Config problems that stop the workflow when it is parsed, before any job queues (issue 15, items 5 and 6
and the parse-time checks of its "Also" paragraph): each error names the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import REPO, run_snakemake, tiny_config
from sieve.config_checks import ConfigError, check_config, check_finite, check_model, non_finite_numbers

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    words = tmp_path / "words.txt"
    words.write_text("red\nblue\n", encoding="utf-8")
    return tiny_config(tmp_path / "images", words, **overrides)


def _dry_run(tmp_path: Path, cfg: dict[str, Any], extra: tuple[str, ...] = ()) -> str:
    """A real `snakemake -n` that must fail while parsing: returns its output."""
    proc = run_snakemake(tmp_path / "run", cfg, extra=("-n", *extra), check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Job stats" not in out and "rule probe_activations" not in out  # no DAG, no job
    return out


def _number_keys(schema: dict[str, Any], path: str = "") -> list[str]:
    """Dotted keys of every property of type number in the schema (array items as ``key[0]``)."""
    keys = []
    if "number" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]):
        keys.append(path)
    for name, sub in (schema.get("properties") or {}).items():
        keys += _number_keys(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        keys += _number_keys(schema["items"], f"{path}[0]")
    return keys


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key; ``sweeps.select.tau[0]`` is the first item of ``sweeps['select.tau']``."""
    if key.startswith("sweeps."):
        config.setdefault("sweeps", {})[key[len("sweeps.") :].removesuffix("[0]")] = [value]
        return
    *parents, last = key.split(".")
    for p in parents:
        config = config.setdefault(p, {})
    config[last] = value


# ------------------------------------------------------------------------------------------ item 6: finite
def test_every_number_of_the_schema_must_be_finite() -> None:
    keys = _number_keys(yaml.safe_load(SCHEMA.read_text()))
    assert {
        "select.tau",
        "max_bad_image_share",
        "hypothesize.clip_dissect.alpha",
        "generator.guidance_scale",
        "sweeps.select.tau[0]",
        "hypothesize.crop.threshold",
    } <= set(keys)
    for key in keys:
        for bad in (math.nan, math.inf, -math.inf):
            cfg: dict[str, Any] = {}
            _set(cfg, key, bad)
            assert check_finite(cfg) == [f"config key {key}: {bad} is not a finite number"]


def test_finite_numbers_pass() -> None:
    assert list(non_finite_numbers({"a": 1.5, "b": [0, 2.0], "c": {"d": 1e300}, "e": "nan"})) == []


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"select": {"tau": math.nan, "top_n": 5}}, "select.tau: nan"),
        ({"max_bad_image_share": math.nan}, "max_bad_image_share: nan"),
        ({"hypothesize": {"clip_dissect": {"alpha": math.inf}}}, "hypothesize.clip_dissect.alpha: inf"),
    ],
)
@pytest.mark.workflow
def test_non_finite_yaml_stops_the_parse(tmp_path: Path, patch: dict[str, Any], key: str) -> None:
    cfg = _config(tmp_path, **patch)
    assert ".nan" in yaml.safe_dump(cfg) or ".inf" in yaml.safe_dump(cfg)  # really YAML's spelling
    out = _dry_run(tmp_path, cfg)
    assert f"config key {key} is not a finite number" in out


@pytest.mark.workflow
def test_non_finite_command_line_config_stops_the_parse(tmp_path: Path) -> None:
    """`--config key=nan` arrives as a float NaN; `--config 'select={tau: .inf}'` as the string '.inf'."""
    out = _dry_run(tmp_path, _config(tmp_path), extra=("--config", "max_bad_image_share=nan"))
    assert "config key max_bad_image_share: nan is not a finite number" in out
    out = _dry_run(tmp_path, _config(tmp_path), extra=("--config", "select={tau: .inf}"))
    assert "On instance['select']['tau']" in out and "'.inf' is not of type 'number'" in out


# ------------------------------------------------------------------------------ item 5: memory-sized values
@pytest.mark.workflow
def test_huge_top_n_is_a_parse_error_naming_the_key(tmp_path: Path) -> None:
    out = _dry_run(tmp_path, _config(tmp_path, select={"tau": 1.5, "top_n": 100_000_000}))
    assert "100000000 is greater than the maximum of 1000" in out and "top_n" in out


def test_memory_sized_keys_have_a_maximum() -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    props = schema["properties"]
    model = schema["definitions"]["model"]["properties"]
    for spec in (
        props["select"]["properties"]["top_n"],
        model["batch_size"],
        model["input_size"],
        props["embedder"]["properties"]["batch_size"],
        props["generator"]["properties"]["batch_size"],
        props["generator"]["properties"]["resolution"],
        props["generator"]["properties"]["images_per_concept"],
        props["hypothesize"]["properties"]["clip_dissect"]["properties"]["top_images"],
        schema["definitions"]["probe"]["properties"]["n_images"],
        props["num_workers"],
    ):
        assert "maximum" in spec and spec["maximum"] >= spec.get("default", 1)


# ----------------------------------------------------------------------- "Also": checks that need no model
@pytest.mark.workflow
def test_unknown_torchvision_arch_is_a_parse_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, models={"cnn": {"source": "torchvision", "arch": "resnet5O"}})
    proc = run_snakemake(tmp_path / "run", cfg, check=False, timeout=300)  # a real run: nothing may start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "config key models.cnn.arch: unknown torchvision arch 'resnet5O' (did you mean resnet50" in out
    assert not (tmp_path / "run" / "logs").exists() and not (tmp_path / "run" / "results").exists()


@pytest.mark.workflow
def test_missing_checkpoint_and_unknown_timm_arch_are_parse_errors(tmp_path: Path) -> None:
    ckpt = tmp_path / "nowhere" / "model.pth"
    cfg = _config(
        tmp_path,
        models={
            "a": {"source": "torchvision", "arch": "resnet18", "weights": str(ckpt)},
            "b": {"source": "timm", "arch": "vit_tiny_patch16_22"},
        },
    )
    out = _dry_run(tmp_path, cfg)
    assert f"config key models.a.weights: checkpoint file not found: {ckpt}" in out
    assert "config key models.b.arch: unknown timm arch 'vit_tiny_patch16_22'" in out


@pytest.mark.workflow
def test_missing_embedder_files_are_parse_errors(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        embedder={
            "source": "open_clip",
            "arch": "custom",
            "model_config": str(tmp_path / "custom.json"),
            "pretrained": str(tmp_path / "w" / "custom.pt"),
        },
    )
    out = _dry_run(tmp_path, cfg)
    assert f"config key embedder.model_config: model config file not found: {tmp_path / 'custom.json'}" in out
    assert f"config key embedder.pretrained: checkpoint file not found: {tmp_path / 'w' / 'custom.pt'}" in out


def test_names_that_are_not_files_pass() -> None:
    """Hub names, weights names and URLs are left to the job (they may need a download)."""
    assert check_model("m", {"source": "torchvision", "arch": "resnet50", "weights": "IMAGENET1K_V2"}) == []
    assert (
        check_model(
            "m", {"source": "torchvision", "arch": "resnet50", "weights": "https://example.org/r50.pth"}
        )
        == []
    )
    assert check_model("m", {"source": "timm", "arch": "resnet18", "weights": "pretrained"}) == []
    assert check_model("m", {"source": "python", "factory": "tinymodels:hotspot_cnn"}) == []
    check_config(
        {
            "models": {"m": {"source": "synthetic"}},
            "embedder": {"source": "open_clip", "arch": "ViT-B-16", "pretrained": "openai"},
        }
    )


def test_all_problems_in_one_error() -> None:
    with pytest.raises(ConfigError) as exc:
        check_config({"select": {"tau": math.nan}, "models": {"m": {"source": "python"}}})
    assert "select.tau" in str(exc.value) and "models.m.factory" in str(exc.value)
