"""Snakemake script: the trained world's held-out pictures as an image folder (one folder per class index),
the labelled probe set of the trained models."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.trained import load_trained_world
from sieve.trained.data import write_pictures

with script_logging(snakemake.log[0]) as log:
    n = write_pictures(load_trained_world(snakemake.params.spec), "test", snakemake.output.pictures)
    log.info("wrote %d held-out pictures to %s", n, snakemake.output.pictures)
