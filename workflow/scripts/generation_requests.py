"""Snakemake script: every distinct concept of every hypotheses folder, and every concept set's control pool ->
results/generate/requests.json."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.verify.requests import run_requests

with script_logging(snakemake.log[0]):
    p = snakemake.params
    run_requests(
        list(snakemake.input.hypotheses),
        snakemake.output.requests,
        p.prompt,
        p.shards,
        p.generator,
        concepts_jsons=list(snakemake.input.concepts),
        controls=p.controls,
        control_seed=p.control_seed,
        neutral_prompts=list(p.neutral_prompts),
    )
