"""Snakemake script: read, clean and hash one concept set (fetching a url list once)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.concepts import load_concept_set
from sieve.io import script_logging, write_json

with script_logging(snakemake.log[0]):
    p = snakemake.params
    write_json(
        snakemake.output.json,
        load_concept_set(snakemake.wildcards.concept_set, dict(p.spec), resources_dir=p.resources),
    )
