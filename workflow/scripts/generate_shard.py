"""Snakemake script: one generation shard (generate what the cache lacks, measure every model on the device)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.generators import speed_from_resources
from sieve.config import with_defaults
from sieve.io import read_json, script_logging
from sieve.verify.plan import job_of
from sieve.verify.shard import run_shard

with script_logging(snakemake.log[0]):
    p = snakemake.params
    shard = int(snakemake.wildcards.shard)
    # the speed settings come as resources (changing them reruns nothing), the rest of the spec as params
    generator = {**dict(p.generator), **speed_from_resources(snakemake.resources)}
    job = job_of(snakemake.input.plan, shard, int(with_defaults(generator, "generator")["shards_per_job"]))
    run_shard(
        read_json(snakemake.input.requests),
        shard,
        generator,
        {name: dict(spec) for name, spec in p.models.items()},
        p.cache,
        snakemake.output.manifest,
        device=p.device,
        progress=True,
        together=job[1:] if job[0] == shard else (),
    )
