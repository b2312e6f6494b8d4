"""Snakemake script: which generation shards have anything to generate or measure (the others need no job)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import read_json, script_logging
from sieve.verify.plan import plan_generation

with script_logging(snakemake.log[0]):
    p = snakemake.params
    plan_generation(
        read_json(snakemake.input.requests),
        dict(p.generator),
        {name: dict(spec) for name, spec in p.models.items()},
        p.device,
        p.cache,
        snakemake.input.requests,
        snakemake.output.plan,
        audit=p.audit,
    )
