"""Snakemake script: the tau sweep as one table."""

from sieve.evaluate.sweep import run_sweep_table
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    run_sweep_table(list(snakemake.input.summaries), list(snakemake.params.taus), snakemake.output.json)
