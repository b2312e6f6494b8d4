"""Snakemake script: the trained world's class names, one line per class index (CLIP-Dissect's
imagenet_labels.txt format, synonyms after commas): the ground truth of the trained models' final layers."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.trained import load_trained_world, write_class_names

with script_logging(snakemake.log[0]) as log:
    lines = write_class_names(load_trained_world(snakemake.params.spec), snakemake.output.names)
    log.info("wrote %d class names to %s", len(lines), snakemake.output.names)
