"""Snakemake script: one tau of a sweep (its selection, its hypotheses, Verify's AR and filter)."""

from pathlib import Path

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.sweep import run_sweep_tau
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    run_sweep_tau(
        snakemake.input.select,
        snakemake.input.hypotheses,
        list(snakemake.input.manifests),
        snakemake.wildcards.model,
        snakemake.params.tau,
        str(Path(snakemake.output.select).parent),
        enabled=snakemake.params.enabled,
    )
