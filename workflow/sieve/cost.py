"""A run's cost before it starts: per stage, what it processes and, from measured rates, its GPU-seconds.

    python -m sieve.cost --configfile examples/resnet50_imagenet.yaml --probe-images imagenet_val=50000 \\
        --gpu-class H100 --gpus 1

Counts come from the config: the probe set's images (counted in its folder, or ``--probe-images``), the
model's neurons (the model built with random weights on the CPU, or ``--neurons``), the concept sets' concepts
(read like the workflow reads them; ``--concept-file NAME=PATH`` for a local copy of a list). What a run selects
is known only once it has run, so the counts after Select are upper bounds: every neuron selected (or the share
``--selected-share``), ``k_max`` clusters per neuron, ``concepts_per_cluster`` concepts per cluster; a concept set
gives at most one prompt per concept, shared by every neuron that has it.

Rates (items per second per GPU) are those measured by ``bench/`` on a GPU class: ``bench/results/gpu_suite_*.json``
(:func:`measured_rates`); ``--rate STAGE=PER_S`` adds or overrides one. A stage without a rate for the chosen class
gets no GPU-seconds: the command says so and never guesses one. Wall time for ``--gpus`` GPUs: the GPU stages run
one after another, the generation's shards spread over min(GPUs, shards) GPUs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import with_defaults

BENCH_RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"


class CostError(ValueError):
    """A count or a rate the prediction needs cannot be had; the message says which option supplies it."""


# ---------------------------------------------------------------------------------------------------- rates


def crop_job_rate(rec: dict[str, Any]) -> float:
    """Crops/s of a whole ``embed_crops`` job from the GPU suite's ``crop_embedding`` record: its boxes
    (``boxes``) are computed before loading starts, then the crops are read from JPEG files, cut and embedded
    (``from_jpeg``), so their times per crop add up. A record without them (an older suite) gives its
    on-device rate, from decoded images: a bound, not the job's rate."""
    parts = [rec[k]["per_s_median"] for k in ("from_jpeg", "boxes") if isinstance(rec.get(k), dict)]
    if len(parts) < 2:
        return float(rec["per_s_median"])
    return 1.0 / sum(1.0 / float(r) for r in parts)


def measured_rates(results_dir: Path = BENCH_RESULTS) -> dict[str, dict[str, Any]]:
    """GPU class -> {"rates": {stage key: items/s (median round)}, "source": file}, from the GPU suite's
    results. Keys: ``probe/{arch}``, ``crop_embedding``, ``generate/turbo``, ``generate/base``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(results_dir).glob("gpu_suite_*.json")):
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("small"):
            continue  # the tests' CPU mode measures tiny models: no rate of a real stage
        rates: dict[str, float] = {}
        for arch, r in (rec.get("probe") or {}).items():
            if isinstance(r, dict) and "per_s_median" in r:
                rates[f"probe/{arch}"] = r["per_s_median"]
        if isinstance(rec.get("crop_embedding"), dict):
            rates["crop_embedding"] = crop_job_rate(rec["crop_embedding"])
        gen = rec.get("generate") or {}
        turbo = [v for v in (gen.get("turbo") or {}).get("batch_sizes", {}).values() if isinstance(v, dict)]
        if turbo:
            rates["generate/turbo"] = max(v["per_s_median"] for v in turbo)
        if isinstance(gen.get("base"), dict):
            rates["generate/base"] = gen["base"]["per_s_median"]
        out[str(rec["gpu"])] = {"rates": rates, "source": str(path)}
    return out


def parse_pairs(items: Sequence[str], what: str, cast: type = float) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CostError(f"{what} {item!r}: expected NAME=VALUE")
        try:
            out[key] = cast(value)
        except ValueError:
            raise CostError(f"{what} {item!r}: {value!r} is not a number") from None
    return out


# --------------------------------------------------------------------------------------------------- counts


def probe_images(name: str, spec: dict[str, Any], given: dict[str, int]) -> int:
    if name in given:
        return int(given[name])
    if spec.get("kind") == "synthetic":
        return int(spec["n_images"])
    from .backends.imagesets import open_image_set

    try:
        return len(open_image_set(name, spec))
    except Exception as exc:  # noqa: BLE001 - any reason the set cannot be listed here
        raise CostError(
            f"probes.{name}: cannot count its images here ({exc}); pass --probe-images {name}=N"
        ) from None


def model_neurons(name: str, spec: dict[str, Any], given: dict[str, int]) -> int:
    """The layer's neurons, from the model built with random weights on the CPU (weights do not change it)."""
    if name in given:
        return int(given[name])
    from .backends.models import load_model

    built = {**spec, "weights": None} if spec.get("source") in ("torchvision", "timm") else spec
    try:
        return load_model(name, built, "cpu").n_neurons
    except Exception as exc:  # noqa: BLE001 - any reason the model cannot be built here
        raise CostError(f"models.{name}: cannot build it here ({exc}); pass --neurons {name}=N") from None


def concept_count(
    name: str, spec: dict[str, Any], files: dict[str, str], given: dict[str, int] | None = None
) -> int:
    """The set's concepts: ``given`` (counted already, e.g. by the report from the prepared set), a local copy
    of the list, or the set read like the workflow reads it."""
    if given and name in given:
        return int(given[name])
    from .concepts import clean_concepts, load_concept_set, read_lines

    if name in files:
        return len(clean_concepts(read_lines(files[name])).concepts)
    try:
        return len(load_concept_set(name, spec)["concepts"])
    except Exception as exc:  # noqa: BLE001 - offline, missing file
        raise CostError(
            f"concept_sets.{name}: cannot read it here ({exc}); pass --concept-file {name}=PATH"
        ) from None


def generator_kind(gen: dict[str, Any]) -> str:
    """``turbo`` for a one-step diffusers generator, ``base`` for a many-step one (the GPU suite's two
    settings); other sources by name (no suite measures them)."""
    if gen.get("source") != "diffusers":
        return str(gen.get("source"))
    return "turbo" if int(gen["steps"]) <= 4 else "base"


def predict(
    config: dict[str, Any],
    probe_given: dict[str, int] | None = None,
    neurons_given: dict[str, int] | None = None,
    concept_files: dict[str, str] | None = None,
    selected_share: float = 1.0,
    concepts_given: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Per stage: the items it processes (upper bounds after Select, see the module docstring). Counts in
    ``probe_given``, ``neurons_given`` and ``concepts_given`` are used as they are (nothing is built or read)."""
    if not 0 < selected_share <= 1:
        raise CostError(f"--selected-share {selected_share}: must be in (0, 1]")
    sel = with_defaults(config.get("select"), "select")
    hyp = with_defaults(config.get("hypothesize"), "hypothesize")
    gen = with_defaults(config.get("generator"), "generator")
    probes = {n: probe_images(n, s, probe_given or {}) for n, s in config["probes"].items()}
    models = {n: model_neurons(n, s, neurons_given or {}) for n, s in config["models"].items()}
    concepts = {
        n: concept_count(n, s, concept_files or {}, concepts_given) for n, s in config["concept_sets"].items()
    }
    selected = {n: math.ceil(c * selected_share) for n, c in models.items()}
    top_n, k_max, per_cluster = int(sel["top_n"]), int(hyp["k_max"]), int(hyp["concepts_per_cluster"])
    hypotheses = sum(selected.values()) * len(probes) * k_max * per_cluster
    # Verify's control pool: per concept set, up to verify.controls of its concepts (perhaps hypotheses
    # already), plus the neutral prompts once (sieve.verify.controls).
    ver = with_defaults(config.get("verify"), "verify")
    controls = int(ver["controls"]) if ver["enabled"] else 0
    neutral = len(set(ver["neutral_prompts"])) if ver["enabled"] else 0
    prompts = sum(min(n, hypotheses + controls) for n in concepts.values()) + neutral
    stages = [
        {
            "stage": "probe",
            "items": "images",
            "count": sum(probes.values()) * len(models),
            "rate_keys": [f"probe/{config['models'][m].get('arch', m)}" for m in models],
        },
        {
            "stage": "embed_crops",
            "items": "crops",
            "count": sum(selected.values()) * len(probes) * top_n,
            "rate_keys": ["crop_embedding"],
        },
        {
            "stage": "generate",
            "items": "generated images",
            "count": prompts * int(gen["images_per_concept"]),
            "rate_keys": [f"generate/{generator_kind(gen)}"],
        },
    ]
    return {
        "probe_images": probes,
        "neurons": models,
        "selected_at_most": selected,
        "concepts": concepts,
        "hypotheses_at_most": hypotheses,
        "distinct_prompts_at_most": prompts,
        "shards": int(gen["shards"]),
        "stages": stages,
    }


def with_rates(pred: dict[str, Any], rates: dict[str, float], gpus: int) -> dict[str, Any]:
    """GPU-seconds per stage where a rate is known (None, with the missing key, where not), and wall time."""
    wall: float | None = 0.0
    for st in pred["stages"]:
        keys = st["rate_keys"]
        missing = [k for k in keys if k not in rates]
        if missing:
            st["gpu_seconds"], st["missing_rates"] = None, missing
            wall = None
            continue
        # several models: each runs the stage's share of items at its own rate
        st["gpu_seconds"] = round(sum(st["count"] / len(keys) / rates[k] for k in keys), 1)
        parallel = min(gpus, pred["shards"]) if st["stage"] == "generate" else 1
        st["wall_seconds"] = round(st["gpu_seconds"] / parallel, 1)
        if wall is not None:
            wall += st["wall_seconds"]
    pred["gpus"] = gpus
    pred["wall_seconds"] = None if wall is None else round(wall, 1)
    return pred


# The rules whose benchmark files time each predicted stage (report.tables.benchmark_stage names).
MEASURED_STAGES = {"probe": "probe_activations", "embed_crops": "embed_crops", "generate": "generate_shard"}


def with_measured(pred: dict[str, Any], benchmarks: str | Path) -> dict[str, Any]:
    """Beside each stage, the wall time a finished run measured for it: the sum over its jobs of the
    ``benchmark:`` files' seconds (the report's "Wall time per stage" table)."""
    from .report.tables import read_benchmarks

    totals = {row[0]: row[2] for row in read_benchmarks(benchmarks)["rows"]}
    for st in pred["stages"]:
        st["measured_seconds"] = totals.get(MEASURED_STAGES[st["stage"]])
    return pred


def render(pred: dict[str, Any], gpu_class: str | None) -> str:
    lines = [
        f"probe images: {pred['probe_images']}; neurons: {pred['neurons']}; concepts: {pred['concepts']}",
        f"selected at most: {pred['selected_at_most']}; hypotheses at most: {pred['hypotheses_at_most']:,}; "
        f"distinct prompts at most: {pred['distinct_prompts_at_most']:,}",
        f"GPU class: {gpu_class or 'none chosen'}; GPUs: {pred.get('gpus', '-')}",
        f"{'stage':<14}{'count':>12}  {'items':<18}{'GPU-s':>12}{'wall s':>10}{'measured s':>12}",
    ]
    for st in pred["stages"]:
        gs = "unknown" if st.get("gpu_seconds") is None else f"{st['gpu_seconds']:,.1f}"
        ws = "unknown" if st.get("wall_seconds") is None else f"{st['wall_seconds']:,.1f}"
        ms = "-" if st.get("measured_seconds") is None else f"{st['measured_seconds']:,.1f}"
        lines.append(f"{st['stage']:<14}{st['count']:>12,}  {st['items']:<18}{gs:>12}{ws:>10}{ms:>12}")
    for st in pred["stages"]:
        if st.get("missing_rates"):
            lines.append(
                f"no measured rate for {', '.join(st['missing_rates'])} on {gpu_class or 'any chosen class'}: "
                f"run bench/gpu_suite.py there, or pass --rate {st['missing_rates'][0]}=ITEMS_PER_S"
            )
    total = pred.get("wall_seconds")
    lines.append(f"wall time of the GPU stages: {'unknown' if total is None else f'{total:,.1f} s'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import yaml

    ap = argparse.ArgumentParser(prog="python -m sieve.cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", required=True)
    ap.add_argument("--gpu-class", help="a GPU class with measured rates (see --list-rates)")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--rate", action="append", default=[], help="STAGE=ITEMS_PER_S, e.g. generate/turbo=96")
    ap.add_argument("--probe-images", action="append", default=[], help="PROBE=N")
    ap.add_argument("--neurons", action="append", default=[], help="MODEL=N")
    ap.add_argument("--concept-file", action="append", default=[], help="CONCEPT_SET=PATH")
    ap.add_argument("--selected-share", type=float, default=1.0)
    ap.add_argument("--results-dir", default=str(BENCH_RESULTS), help="where the GPU suite's results are")
    ap.add_argument(
        "--benchmarks", help="a finished run's benchmarks/ folder: its measured wall time per stage, beside"
    )
    ap.add_argument("--list-rates", action="store_true")
    ap.add_argument("--json", help="also write the prediction here")
    args = ap.parse_args(argv)
    try:
        measured = measured_rates(Path(args.results_dir))
        if args.list_rates:
            print(json.dumps(measured, indent=2) if measured else "no GPU class has measured rates yet")
            return 0
        if args.gpus < 1:
            raise CostError(f"--gpus {args.gpus}: must be at least 1")
        if args.gpu_class and args.gpu_class not in measured:
            known = ", ".join(measured) or "none"
            raise CostError(
                f"--gpu-class {args.gpu_class!r} was never measured (measured: {known}); run "
                "bench/gpu_suite.py on it, or pass its rates with --rate"
            )
        rates = {
            **(measured[args.gpu_class]["rates"] if args.gpu_class else {}),
            **parse_pairs(args.rate, "--rate"),
        }
        config = yaml.safe_load(Path(args.configfile).read_text(encoding="utf-8")) or {}
        pred = predict(
            config,
            parse_pairs(args.probe_images, "--probe-images", int),
            parse_pairs(args.neurons, "--neurons", int),
            parse_pairs(args.concept_file, "--concept-file", str),
            args.selected_share,
        )
        pred = with_rates(pred, rates, args.gpus)
        if args.benchmarks:
            pred = with_measured(pred, args.benchmarks)
    except CostError as exc:
        print(f"sieve.cost: {exc}", file=sys.stderr)
        return 2
    pred["config"] = os.fspath(args.configfile)
    pred["gpu_class"] = args.gpu_class
    pred["rates"] = rates
    print(render(pred, args.gpu_class))
    if args.json:
        Path(args.json).write_text(json.dumps(pred, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
