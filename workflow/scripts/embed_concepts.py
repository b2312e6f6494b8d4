"""Snakemake script: CLIP text embeddings of one concept set."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.embedders import load_embedder
from sieve.devices import resolve_device
from sieve.hypothesize import run_embed_concepts
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    embedder = load_embedder(dict(p.embedder), resolve_device(p.device))
    run_embed_concepts(
        snakemake.input.json,
        snakemake.output.h5,
        embedder,
        dict(p.embedder),
        template=p.template,
        batch_size=max(256, snakemake.resources.batch_size),
    )
