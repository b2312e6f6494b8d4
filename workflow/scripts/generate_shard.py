"""Snakemake script: one generation shard (generate what the cache lacks, measure every model on the device)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import read_json, script_logging
from sieve.verify.shard import run_shard

with script_logging(snakemake.log[0]):
    p = snakemake.params
    run_shard(
        read_json(snakemake.input.requests),
        int(snakemake.wildcards.shard),
        dict(p.generator),
        {name: dict(spec) for name, spec in p.models.items()},
        p.cache,
        snakemake.output.manifest,
        device=p.device,
        progress=True,
    )
