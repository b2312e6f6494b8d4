"""Snakemake script: the tau sweep as one table."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.sweep import run_sweep_table
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    run_sweep_table(list(snakemake.input.summaries), list(snakemake.params.taus), snakemake.output.json)
