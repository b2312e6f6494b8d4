"""Snakemake script: top concepts of each cluster of each selected neuron, for one concept set."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.hypothesize import run_hypothesize
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    run_hypothesize(
        snakemake.input.clusters,
        snakemake.input.crops,
        snakemake.input.concepts,
        snakemake.input.embeddings,
        snakemake.output.hypotheses,
        concepts_per_cluster=snakemake.params.concepts_per_cluster,
    )
