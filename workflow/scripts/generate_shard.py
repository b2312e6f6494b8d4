"""Snakemake script: one generation shard (generate what the cache lacks, measure every model on the device)."""

from sieve.io import read_json, setup_logging, stderr_to
from sieve.verify import run_shard

setup_logging(snakemake.log[0])
with stderr_to(snakemake.log[0]):
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
