"""Snakemake script: Select for one (model, probe) pair."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.activations import read_activations
from sieve.io import script_logging
from sieve.select import run_select

with script_logging(snakemake.log[0]):
    p = snakemake.params
    run_select(
        read_activations(snakemake.input.h5),
        snakemake.output.summary,
        snakemake.output.neurons,
        tau=p.tau,
        top_n=p.top_n,
        enabled=p.enabled,
        negative=p.negative,
    )
