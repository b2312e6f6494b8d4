"""Step 2 of Verify, on a CPU: the generation plan, which shards have anything to generate or measure.

The plan (a Snakemake checkpoint run as a local rule, ``results/generate/plan/``) reads the requests and audits
the shared cache with the keys that the shard jobs resolved (their resolution record,
:func:`.shard.read_resolution`): a shard whose concepts are all complete and intact in the cache becomes no GPU
job; the plan writes the manifest that job would have written (``plan/shards/{shard}.json``, zero images
generated) and Activation Rate reads it. Only a shard with work becomes a ``generate_shard`` job. Without a resolution record (no shard of these settings has
run yet, or the cache was removed) every shard is planned as work.

:func:`audit_plan` runs when the workflow is parsed (dry runs included; it only reads): it checks that every
entry the last plan relies on is still complete and matches its recorded checksums. It returns the token the
plan recorded while the cache is intact, and a different one when anything is missing or damaged, so that a
plain ``snakemake`` reruns the plan (Snakemake's params trigger), which sends the damaged shards to a
``generate_shard`` job again; once repaired, the token equals the recorded one and nothing reruns.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..config import with_defaults
from ..io import read_json, stable_hash, write_json
from .cache import CacheEntry, adopt_checksums
from .requests import concept_seeds
from .shard import (
    check_shard,
    plan_shard,
    read_resolution,
    resolution_key,
    settings_from_record,
    shard_concepts,
    shard_manifest,
)

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
PLANNED_SHARD = "shards/{shard}.json"


def planned_manifest_path(plan_dir: str | Path, shard: int) -> Path:
    """The manifest the plan writes for a shard that needs no job."""
    return Path(plan_dir) / PLANNED_SHARD.format(shard=int(shard))


def current_manifests(plan_dir: str | Path, shard_pattern: str) -> list[str]:
    """Every shard's current manifest, in shard order: the job's (``shard_pattern``, with ``{shard}``) for a
    shard the plan sent to a job, the plan's own for the others. What Activation Rate reads (through the rules'
    input functions) and what the report reads, so the two always see the same images."""
    plan = read_json(Path(plan_dir) / PLAN_FILE)
    work = set(plan["work"])
    return [
        shard_pattern.format(shard=s["shard"])
        if s["shard"] in work
        else str(planned_manifest_path(plan_dir, s["shard"]))
        for s in plan["shards"]
    ]


def shard_jobs(work: list[int], shards_per_job: int) -> list[list[int]]:
    """The plan's shards with work, ``shards_per_job`` to a job, in order: the first of each list (the job's
    leader) generates them all, loading the pipeline and the models once; the others then find their
    concepts cached and load nothing (``generator.shards_per_job``, docs/cluster.md)."""
    if shards_per_job < 1:
        raise ValueError(f"generator.shards_per_job must be at least 1, got {shards_per_job}")
    return [list(work[i : i + shards_per_job]) for i in range(0, len(work), shards_per_job)]


def job_of(plan_dir: str | Path, shard: int, shards_per_job: int) -> list[int]:
    """The shards of the generation job ``shard`` belongs to (its leader first; ``[shard]`` when it has no
    work or jobs hold one shard)."""
    if shards_per_job == 1:
        return [int(shard)]
    work = read_json(Path(plan_dir) / PLAN_FILE)["work"]
    return next((job for job in shard_jobs(work, shards_per_job) if int(shard) in job), [int(shard)])


def shard_entries(
    requests: dict[str, Any], shard: int, cache_root: str | Path, generator_key: str
) -> tuple[list[dict[str, Any]], list[CacheEntry]]:
    concepts = shard_concepts(requests, shard)
    return concepts, [CacheEntry(Path(cache_root), generator_key, c["key"]) for c in concepts]


def plan_generation(
    requests: dict[str, Any],
    generator_spec: dict[str, Any],
    model_specs: dict[str, dict[str, Any]],
    device: str,
    cache_root: str,
    requests_path: str,
    plan_dir: str,
    audit: str = "",
) -> dict[str, Any]:
    """Decide, shard by shard, whether a GPU job is needed; write ``plan.json`` and the manifests of the shards
    that need none. ``audit``: the parse-time token of :func:`audit_plan`, recorded in the plan."""
    gen = with_defaults(generator_spec, "generator")
    n_shards = int(gen["shards"])
    check_shard(requests, 0, n_shards)
    rkey = resolution_key(generator_spec, model_specs, device)
    record = read_resolution(cache_root, rkey)
    seeds = concept_seeds(gen["seed"], gen["images_per_concept"])
    shards = []
    for shard in range(n_shards):
        if record is None:
            n = len(shard_concepts(requests, shard))
            shards.append(
                {"shard": shard, "n_concepts": n, "n_generate": None, "n_measure": None, "work": True}
            )
            continue
        settings = settings_from_record(record, generator_spec)
        concepts, entries = shard_entries(requests, shard, cache_root, settings.generator_key)
        adopt_checksums(f for e in entries for f in e.files(settings.model_keys.values(), seeds))
        plan = plan_shard(entries, seeds, settings.keep, settings.model_keys.values())
        shards.append(
            {
                "shard": shard,
                "n_concepts": len(concepts),
                "n_generate": len(plan.generate),
                "n_measure": len(plan.from_images),
                "work": not plan.empty,
            }
        )
        if plan.empty:
            write_json(
                planned_manifest_path(plan_dir, shard),
                shard_manifest(shard, n_shards, concepts, entries, settings, plan, 0.0, 0.0),
            )
    out = {
        "audit": audit,
        "requests": str(requests_path),
        "resolution_key": rkey,
        "resolution": record,
        "seeds": seeds,
        "keep_images": gen["keep_images"],
        "shards": shards,
        "work": [s["shard"] for s in shards if s["work"]],
    }
    Path(plan_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(plan_dir) / PLAN_FILE, out)
    log.info(
        "generation plan: %d of %d shards have work (%s)%s",
        len(out["work"]),
        n_shards,
        ", ".join(
            f"shard {s['shard']}: {s['n_generate']} to generate, {s['n_measure']} to measure"
            for s in shards
            if s["work"]
        )
        or "all cached",
        "" if record else "; no shard of these settings has run yet, so every shard is a job",
    )
    return out


def damaged_entries(plan: dict[str, Any], requests: dict[str, Any], cache_root: str | Path) -> list[str]:
    """What the last plan relies on that is no longer there: the entries (folders) of incomplete or damaged
    concepts, or the resolution record. Reads only (no file is written)."""
    record = read_resolution(cache_root, plan["resolution_key"])
    if record is None:
        return [
            f"resolution record {plan['resolution_key']} (the cache was removed, or no shard has run yet)"
        ]
    if plan["resolution"] is not None and record != plan["resolution"]:
        return [f"resolution record {plan['resolution_key']} (changed since the plan)"]
    bad = []
    model_keys = [m["key"] for m in record["models"].values()]
    for s in plan["shards"]:
        _, entries = shard_entries(requests, s["shard"], cache_root, record["generator_key"])
        for entry in entries:
            if not plan_shard([entry], plan["seeds"], plan["keep_images"], model_keys).empty:
                bad.append(str(entry.dir))
    return bad


def audit_plan(plan_dir: str | Path, cache_root: str | Path) -> str:
    """The plan's audit token: the recorded one while everything it relies on is intact, another one (naming
    what is missing or damaged) when not. Printed to stderr when damage is found. No plan yet: ``""``."""
    plan_path = Path(plan_dir) / PLAN_FILE
    try:
        plan = read_json(plan_path)
        requests = read_json(plan["requests"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return ""
    try:
        bad = damaged_entries(plan, requests, cache_root)
    except (KeyError, TypeError, ValueError) as exc:  # a plan of an older layout: plan again
        bad = [f"{plan_path} ({type(exc).__name__}: {exc})"]
    if not bad:
        return str(plan.get("audit", ""))
    shown = "\n  ".join(bad[:20]) + (f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else "")
    print(
        f"sieve: {len(bad)} cache entries that {plan_path} relies on are missing or damaged; they are "
        f"generated again:\n  {shown}",
        file=sys.stderr,
    )
    return stable_hash("audit", plan.get("audit", ""), sorted(bad))
