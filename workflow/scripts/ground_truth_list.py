"""Snakemake script: a model's published class list, fetched, checked and cleaned."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.final_layer import fetch_ground_truth
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    fetch_ground_truth(dict(snakemake.params.spec), snakemake.output.txt, snakemake.params.downloads)
