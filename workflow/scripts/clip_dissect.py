"""Snakemake script: CLIP-Dissect's SoftWPMI labels for one (model, probe, concept set)."""

import torch
import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.clip_dissect import run_clip_dissect
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    torch.set_num_threads(max(1, snakemake.threads))
    p = snakemake.params
    run_clip_dissect(
        snakemake.input.images,
        snakemake.input.select,
        snakemake.input.concepts,
        snakemake.input.embeddings,
        snakemake.output.hypotheses,
        snakemake.output.labels,
        alpha=p.alpha,
        lam=p.lam,
        top_images=p.top_images,
    )
