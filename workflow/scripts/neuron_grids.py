"""Snakemake script: one image grid per selected neuron (top images with boxes and activation maps, grouped by
cluster)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.imagesets import open_image_set
from sieve.io import script_logging
from sieve.report.grids import run_grids

with script_logging(snakemake.log[0]):
    p = snakemake.params
    run_grids(
        snakemake.input.clusters,
        snakemake.input.crops,
        open_image_set(snakemake.wildcards.probe, dict(p.probe)),
        snakemake.output.grids,
        tile=p.tile,
        num_workers=min(snakemake.resources.workers, snakemake.threads),  # threads loading thumbnails
        activations_h5=snakemake.input.activations,
    )
