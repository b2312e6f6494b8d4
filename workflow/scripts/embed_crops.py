"""Snakemake script: crops of every selected neuron's top images and their CLIP embeddings (one batched job)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.embedders import load_embedder
from sieve.backends.imagesets import open_image_set
from sieve.crops import run_embed_crops
from sieve.devices import resolve_device
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    device = resolve_device(p.device)
    embedder = load_embedder(dict(p.embedder), device)
    run_embed_crops(
        snakemake.input.h5,
        snakemake.input.neurons,
        open_image_set(snakemake.wildcards.probe, dict(p.probe)),
        embedder,
        snakemake.output.h5,
        spec=dict(p.embedder),
        crop=dict(p.crop),
        batch_size=snakemake.resources.batch_size,
        num_workers=min(snakemake.resources.workers, max(0, snakemake.threads - 1)),
        device=device,
    )
