"""Snakemake script: Activation Rate, filter and neuron_concepts.csv for one hypotheses folder.

Reusable by other rules (baselines): inputs hypotheses, select, manifests; outputs ar, summary,
neuron_concepts, generated; params enabled, method; wildcard model."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.verify.activation_rate import run_activation_rate

with script_logging(snakemake.log[0]):
    run_activation_rate(
        snakemake.input.hypotheses,
        snakemake.input.select,
        list(snakemake.input.manifests),
        snakemake.wildcards.model,
        snakemake.output.ar,
        snakemake.output.summary,
        snakemake.output.neuron_concepts,
        out_generated=snakemake.output.generated,
        enabled=snakemake.params.enabled,
        method=snakemake.params.method,
    )
