"""Snakemake script: one generation shard (generate what the cache lacks, measure every model on the device)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.config import with_defaults
from sieve.io import read_json, script_logging
from sieve.verify.plan import job_of
from sieve.verify.shard import run_shard

with script_logging(snakemake.log[0]):
    p = snakemake.params
    shard = int(snakemake.wildcards.shard)
    job = job_of(
        snakemake.input.plan, shard, int(with_defaults(dict(p.generator), "generator")["shards_per_job"])
    )
    run_shard(
        read_json(snakemake.input.requests),
        shard,
        dict(p.generator),
        {name: dict(spec) for name, spec in p.models.items()},
        p.cache,
        snakemake.output.manifest,
        device=p.device,
        progress=True,
        together=job[1:] if job[0] == shard else (),
    )
