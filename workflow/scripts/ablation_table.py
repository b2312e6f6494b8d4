"""Snakemake script: the ablation table of one model / probe / concept set."""

from sieve.io import script_logging
from sieve.synthetic.truth import VARIANTS, run_ablations

with script_logging(snakemake.log[0]):
    inp = snakemake.input
    variants = {
        v: {key: str(getattr(inp, f"{v}_{key}")) for key in ("select", "verify_summary", "ar", "neuron_concepts")}
        for v in VARIANTS
    }
    run_ablations(variants, snakemake.output.json, spec=snakemake.params.spec, synthetic=bool(snakemake.params.synthetic))
