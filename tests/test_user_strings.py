"""User strings reach the scripts verbatim (issue 15, item 7).

Snakemake formats a string param (and every string of a list param) and every input path with the job's
wildcards, so ``{x}`` in a report title stopped the parse with a ``WildcardError`` naming no key, and
``{concept_set}`` in a template was silently replaced. Free text from the config reaches the scripts through
functions (which Snakemake never formats); only ``{}`` means the concept. A config path that a rule tracks as an
input file cannot hold ``{name}`` (Snakemake has no escape for braces in paths): that is an error naming the key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import h5py
import pytest

from helpers import SMALL_SYNTHETIC, make_image_folder, run_snakemake
from sieve.config_checks import ConfigError, check_config, check_input_paths

TITLE = "{x} report of {model} {}"
TEMPLATE = "a photo of {} from {concept_set} {{x}}"
PROMPT = "{} seen from {probe}, {x}"


def braced_config(tmp_path: Path) -> dict[str, Any]:
    """The small synthetic run with braces in every free-text string and in dict-valued specs (kwargs), with
    every optional stage switched on so that every rule's params are built."""
    cfg = copy.deepcopy(SMALL_SYNTHETIC)
    classes = tmp_path / "classes.txt"
    classes.write_text("a\nb\n", encoding="utf-8")
    images = make_image_folder(tmp_path / "pics {x}", n_per_class=2, corrupt=0)
    cfg["models"]["synthetic"].update(ground_truth=str(classes), kwargs={"note": "{x}"})
    cfg["probes"]["folder"] = {"kind": "imagefolder", "path": str(images)}
    cfg["hypothesize"].update(methods=["sieve", "clip_dissect"], template=TEMPLATE)
    cfg["generator"].update(prompt=PROMPT, kwargs={"negative_prompt": "{x} {probe}"})
    cfg["evaluate"] = {
        "stage_ablations": True,
        "ablate_neurons": {"synthetic": [0]},
        "mpnet_model": "org/{x}",
        "clip_model": {"source": "synthetic", "kwargs": {"note": "{x}"}},
    }
    cfg["sweeps"] = {"select.tau": [5, 20]}
    cfg["report"] = {"title": TITLE}
    return cfg


@pytest.mark.workflow
def test_braces_in_user_strings_do_not_stop_the_parse(tmp_path: Path) -> None:
    proc = run_snakemake(
        tmp_path / "run",
        braced_config(tmp_path),
        targets=("all", "prefetch"),
        extra=("-n",),
        check=False,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "WildcardError" not in out
    for rule in ("report", "generation_requests", "embed_concepts", "final_layer_metrics", "prefetch"):
        assert f"rule {rule}:" in out


@pytest.mark.workflow
def test_user_strings_reach_the_scripts_verbatim(tmp_path: Path) -> None:
    """A real run: the report title, the concept template and the generator prompt arrive as written (only
    ``{}`` is filled with the concept; ``{concept_set}`` was silently replaced by the set's name)."""
    cfg = copy.deepcopy(SMALL_SYNTHETIC)
    cfg["hypothesize"]["template"] = TEMPLATE
    cfg["generator"]["prompt"] = PROMPT
    cfg["report"] = {"title": TITLE}
    cfg["verify"] = {"neutral_prompts": ["a {x} photo of {concept_set}"]}
    run = tmp_path / "run"
    run_snakemake(run, cfg)

    with h5py.File(run / "results/concepts/synthetic/embeddings.h5", "r") as f:
        assert f.attrs["template"] == TEMPLATE
    requests = json.loads((run / "results/generate/requests.json").read_text(encoding="utf-8"))
    assert requests["prompt_template"] == PROMPT and requests["concepts"]
    neutral = [c for c in requests["concepts"] if not c["texts"]]  # the control pool's neutral prompt, as is
    assert [c["prompt"] for c in neutral] == ["a {x} photo of {concept_set}"] and neutral[0]["control"]
    for c in requests["concepts"]:
        if c["texts"]:
            assert c["prompt"] == f"{c['texts'][0]} seen from {{probe}}, {{x}}"
    html = (run / "results/report/index.html").read_text(encoding="utf-8")
    assert "<title>{x} report of {model} {}</title>" in html


# ------------------------------------------------------------------------ paths Snakemake tracks as inputs
@pytest.mark.parametrize(
    "key",
    [
        "concept_sets.words.path",
        "concept_sets.world.synthetic",
        "models.m.spec",
        "models.m.ground_truth",
        "probes.p.spec",
    ],
)
def test_a_tracked_path_with_a_wildcard_is_an_error_naming_its_key(tmp_path: Path, key: str) -> None:
    braced = tmp_path / "lists {concept_set}" / "file.txt"
    braced.parent.mkdir()
    braced.write_text("red\n", encoding="utf-8")
    cfg: dict[str, Any] = {
        "models": {"m": {"source": "synthetic"}},
        "probes": {"p": {"kind": "synthetic"}},
        "concept_sets": {},
    }
    section, name, field = key.split(".")
    cfg[section].setdefault(name, {})[field] = str(braced)
    with pytest.raises(ConfigError, match=rf"config key {key.replace('.', '[.]')}: .*\{{concept_set\}}"):
        check_config(cfg)


def test_braces_that_are_no_wildcard_are_fine_in_tracked_paths() -> None:
    cfg = {"concept_sets": {"a": {"path": "lists/{}/words.txt"}, "b": {"path": "lists/{a-b}.txt"}}}
    assert check_input_paths(cfg) == []


@pytest.mark.workflow
@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"concept_sets": {"synthetic": {"path": "{x}/words.txt"}}}, "concept_sets.synthetic.path"),
        ({"hypothesize": {"template": "a photo"}}, "['hypothesize']['template']"),
        ({"generator": {**SMALL_SYNTHETIC["generator"], "prompt": "{x}"}}, "['generator']['prompt']"),
    ],
)
def test_an_unusable_string_stops_the_parse_naming_its_key(tmp_path: Path, change: dict, key: str) -> None:
    """A tracked path with a wildcard, and a template or prompt without ``{}`` (it would give every concept the
    same text), stop the run before any job, naming the key."""
    cfg = {**copy.deepcopy(SMALL_SYNTHETIC), **change}
    if "path" in json.dumps(change):
        (tmp_path / "run" / "{x}").mkdir(parents=True)
        (tmp_path / "run" / "{x}" / "words.txt").write_text("red\n", encoding="utf-8")
    proc = run_snakemake(tmp_path / "run", cfg, extra=("-n",), check=False, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and key in out, out[-3000:]
    assert "rule probe_activations" not in out
