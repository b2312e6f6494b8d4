"""Snakemake script: probe activations of one (model, probe) pair."""

from sieve.backends.models import load_model
from sieve.backends.probes import open_probe
from sieve.devices import resolve_device, resolve_dtype
from sieve.io import setup_logging, stderr_to
from sieve.probe import run_probe

setup_logging(snakemake.log[0])
with stderr_to(snakemake.log[0]):
    p = snakemake.params
    device = resolve_device(p.device)
    model = load_model(snakemake.wildcards.model, p.model, device, resolve_dtype(p.model.get("dtype", "auto"), device))
    probe = open_probe(snakemake.wildcards.probe, p.probe)
    run_probe(
        model,
        probe,
        snakemake.output.h5,
        top_n=p.top_n,
        batch_size=p.model.get("batch_size", 64),
        num_workers=min(p.num_workers, max(0, snakemake.threads - 1)),
        max_bad_share=p.max_bad_share,
        probe_spec=p.probe,
    )
