"""Snakemake script: Ward clusters of each selected neuron's crop embeddings."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.hypothesize import run_cluster
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    run_cluster(
        snakemake.input.h5,
        snakemake.output.clusters,
        cluster=p.cluster,
        k_max=p.k_max,
        silhouette_floor=p.silhouette_floor,
        min_cluster_size=p.min_cluster_size,
    )
