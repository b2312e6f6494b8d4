"""Defaults live in the schema only: sieve.config reads them for direct calls of library functions."""

from __future__ import annotations

import inspect
import subprocess

import pytest
import yaml

from helpers import REPO, snakemake_cmd, snakemake_env
from sieve.config import SCHEMA_PATH, SchemaKeyError, coerce_booleans, schema_default, with_defaults


def test_schema_default_reads_the_schema_file():
    raw = yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert (
        schema_default("generator.shards")
        == raw["properties"]["generator"]["properties"]["shards"]["default"]
        == 8
    )
    assert schema_default("models.*.dtype") == "float32"  # through additionalProperties and a $ref
    assert schema_default("generator.dtype") == "auto"  # the generator keeps bf16 on a GPU
    assert schema_default("probes.*.split") == "val"
    assert schema_default("hypothesize.crop.method") == "region"


def test_unknown_key_or_key_without_default_is_an_error():
    with pytest.raises(SchemaKeyError, match="'generator.nope' is not in config.schema.yaml"):
        schema_default("generator.nope")
    with pytest.raises(SchemaKeyError, match="'models.\\*.arch' has no default"):
        schema_default("models.*.arch")


def test_with_defaults_fills_only_missing_keys_and_copies():
    spec = {"source": "python", "shards": 2}
    full = with_defaults(spec, "generator")
    assert full["shards"] == 2 and full["images_per_concept"] == schema_default(
        "generator.images_per_concept"
    )
    assert spec == {"source": "python", "shards": 2}  # the caller's dict is untouched
    a, b = with_defaults(None, "hypothesize"), with_defaults(None, "hypothesize")
    a["crop"]["method"] = "window"
    assert b["crop"] == {}  # defaults are copies, never shared


def test_library_defaults_are_the_schema_defaults():
    """Signature defaults of functions a user may call directly come from the schema, not retyped."""
    from sieve.crops import crop_box
    from sieve.evaluate.clip_dissect import run_clip_dissect
    from sieve.hypothesize import run_cluster, run_hypothesize
    from sieve.verify.requests import collect_requests

    def default(fn, name):
        return inspect.signature(fn).parameters[name].default

    assert default(run_cluster, "k_max") == schema_default("hypothesize.k_max")
    assert default(run_cluster, "silhouette_floor") == schema_default("hypothesize.silhouette_floor")
    assert default(run_hypothesize, "concepts_per_cluster") == schema_default(
        "hypothesize.concepts_per_cluster"
    )
    assert default(crop_box, "threshold") == schema_default("hypothesize.crop.threshold")
    assert default(run_clip_dissect, "top_images") == schema_default("hypothesize.clip_dissect.top_images")
    assert default(collect_requests, "n_shards") == schema_default("generator.shards") == 8


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("true", True),
        ("True", True),
        ("YES", True),
        ("1", True),
        (1, True),
        ("false", False),
        ("No", False),
        ("0", False),
        (0, False),
    ],
)
def test_shell_spellings_of_booleans_become_bools(typed, value):
    cfg = {
        "offline": typed,
        "select": {"enabled": typed, "tau": 1},
        "evaluate": {"stage_ablations": typed},
        "probes": {"p": {"kind": "imagefolder", "download": typed, "seed": 1}},
    }
    coerce_booleans(cfg)
    assert cfg["offline"] is value and cfg["select"]["enabled"] is value
    assert cfg["evaluate"]["stage_ablations"] is value and cfg["probes"]["p"]["download"] is value
    assert cfg["select"]["tau"] == 1 and cfg["probes"]["p"]["seed"] == 1  # numbers stay numbers


def test_other_values_are_left_for_the_schema_to_reject():
    cfg = {"offline": "maybe", "select": {"enabled": 2}, "device": "1"}
    coerce_booleans(cfg)
    assert cfg == {"offline": "maybe", "select": {"enabled": 2}, "device": "1"}


@pytest.mark.workflow
def test_config_offline_true_on_the_command_line(tmp_path):
    """`--config offline=true` as a shell user types it plans the run; a word that is no boolean is refused."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    base = ("-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--config")
    ok = subprocess.run(
        snakemake_cmd(*base, "offline=TRUE", "--quiet", "all"),
        capture_output=True,
        text=True,
        env=snakemake_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = subprocess.run(
        snakemake_cmd(*base, "offline=maybe"),
        capture_output=True,
        text=True,
        env=snakemake_env(),
        cwd=tmp_path,
        timeout=300,
    )
    text = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "'maybe' is not of type 'boolean'" in text and "offline" in text, text[
        -3000:
    ]
