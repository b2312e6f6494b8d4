"""Snakemake script: the final HTML report."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import script_logging
from sieve.report import build_report

with script_logging(snakemake.log[0]):
    p = snakemake.params
    build_report(
        snakemake.output.html,
        snakemake.output.assets,
        models=p.models,
        probes=p.probes,
        concept_sets=p.concept_sets,
        results="results",  # the workflow's path scheme, relative to its working directory
        benchmarks="benchmarks",
        settings=p.settings,
        title=p.title,
        generated_per_concept=p.generated_per_concept,
        comparison_csv=snakemake.output.comparison,
        ar_png=snakemake.output.ar_png,
    )
