"""Snakemake script: CLIP-Dissect's whole-image CLIP embeddings of every probe image among the neurons' top images."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.embedders import load_embedder
from sieve.backends.imagesets import open_image_set
from sieve.devices import resolve_device
from sieve.evaluate.clip_dissect import run_embed_probe_images
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    embedder = load_embedder(dict(p.embedder), resolve_device(p.device))
    run_embed_probe_images(
        snakemake.input.h5,
        open_image_set(snakemake.wildcards.probe, dict(p.probe)),
        embedder,
        dict(p.embedder),
        snakemake.output.h5,
        top_images=p.top_images,
        batch_size=snakemake.resources.batch_size,
        num_workers=min(snakemake.resources.workers, max(0, snakemake.threads - 1)),
    )
