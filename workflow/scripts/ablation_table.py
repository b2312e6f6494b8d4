"""Snakemake script: the stage-ablation table of one model / probe / concept set."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.evaluate.stage_ablations import STAGE_VARIANTS, run_stage_ablations
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    inp = snakemake.input
    variants = {
        v: {
            key: str(getattr(inp, f"{v}_{key}"))
            for key in ("select", "verify_summary", "ar", "neuron_concepts")
        }
        for v in STAGE_VARIANTS
    }
    run_stage_ablations(
        variants,
        snakemake.output.json,
        spec=snakemake.params.spec,
        synthetic=bool(snakemake.params.synthetic),
    )
