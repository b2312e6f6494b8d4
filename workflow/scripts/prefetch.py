"""Snakemake script: download every weight, pipeline, concept list and probe set the config names."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.offline import set_offline

set_offline(False)  # prefetch is the one job that must reach the network, whatever `offline:` says

from sieve.io import script_logging, write_json  # noqa: E402
from sieve.prefetch import cache_locations, prefetch  # noqa: E402

with script_logging(snakemake.log[0]):
    p = snakemake.params
    config = {
        "models": p.models,
        "probes": p.probes,
        "embedder": p.embedder,
        "generator": p.generator,
        "concept_sets": p.concept_sets,
        "evaluate": p.evaluate,
    }
    records = prefetch(config, resources_dir=p.resources)
    write_json(snakemake.output.manifest, {"caches": cache_locations(), "items": records})
