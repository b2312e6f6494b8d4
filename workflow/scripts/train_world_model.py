"""Snakemake script: train one model of the trained world; its checkpoint and held-out accuracy (training.json).
A model under the spec's accuracy floor stops the run with its figure (sieve.trained.TrainingFailed)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.trained import run_train

with script_logging(snakemake.log[0]):
    run_train(
        snakemake.params.spec,
        snakemake.wildcards.trained,
        snakemake.output.checkpoint,
        snakemake.output.metrics,
        threads=snakemake.threads,
    )
