"""Snakemake script: planted truth beside the result for one synthetic model / probe / concept set (and, when
the CLIP-Dissect baseline ran, its recovery beside SIEVE's)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.truth import add_methods_to_truth, run_truth
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    inp = snakemake.input
    run_truth(
        snakemake.params.spec,
        inp.select,
        inp.neuron_concepts,
        inp.ar,
        inp.verify_summary,
        snakemake.output.csv,
        snakemake.output.summary,
    )
    if inp.baselines:
        add_methods_to_truth(
            snakemake.output.summary,
            snakemake.params.spec,
            inp.select,
            {"clip_dissect": list(inp.baselines)},
            sieve_verify_summary=inp.verify_summary,
        )
