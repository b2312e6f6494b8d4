"""Snakemake script: Activation Rate, filter and neuron_concepts.csv for one hypotheses folder.

Reusable by other rules (baselines): inputs hypotheses, select, manifests, concepts (the concept set's
concepts.json: its control pool); outputs ar, summary, neuron_concepts, generated; params enabled, method,
prompt, controls, control_seed, neutral_prompts, filter, max_control_rate; wildcard model."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.verify.activation_rate import Controls, run_activation_rate

with script_logging(snakemake.log[0]):
    p = snakemake.params
    controls = Controls(
        snakemake.input.concepts,
        template=p.prompt,
        controls=p.controls,
        seed=p.control_seed,
        neutral_prompts=tuple(p.neutral_prompts),
        filter=p.filter,
        max_control_rate=p.max_control_rate,
    )
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
        controls=controls,
    )
