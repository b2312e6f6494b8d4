"""Snakemake script: histogram of log selectivity ratios with tau."""

from sieve.io import read_json, script_logging
from sieve.select import ratio_histogram

with script_logging(snakemake.log[0]):
    ratio_histogram(read_json(snakemake.input.summary), snakemake.output[0])
