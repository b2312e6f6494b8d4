"""Snakemake script: histogram of log selectivity ratios with tau."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.io import read_json, script_logging
from sieve.select import ratio_histogram

with script_logging(snakemake.log[0]):
    ratio_histogram(read_json(snakemake.input.summary), snakemake.output[0])
