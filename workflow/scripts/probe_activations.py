"""Snakemake script: probe activations of one (model, probe) pair."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.devices import resolve_device, resolve_dtype
from sieve.io import script_logging
from sieve.probe import run_probe

with script_logging(snakemake.log[0]):
    p = snakemake.params
    probe = open_image_set(snakemake.wildcards.probe, p.probe)  # cheap checks first
    device = resolve_device(p.device)
    model = load_model(snakemake.wildcards.model, p.model, device, resolve_dtype(p.model["dtype"], device))
    run_probe(
        model,
        probe,
        snakemake.output.h5,
        top_n=p.top_n,
        batch_size=snakemake.resources.batch_size,
        num_workers=min(snakemake.resources.workers, max(0, snakemake.threads - 1)),
        max_bad_share=p.max_bad_share,
        probe_spec=p.probe,
        decode=p.decode,
    )
