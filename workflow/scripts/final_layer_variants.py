"""Snakemake script: the final-layer columns of every swept tau and stage-ablation variant (Tables 4 and 5)."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.embedders import load_embedder
from sieve.devices import resolve_device
from sieve.evaluate.final_layer import load_text_model, run_final_layer_variants
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    device = resolve_device(p.device)
    variants = {k: str(v) for k, v in snakemake.input.items() if k not in ("select", "ground_truth")}
    clip = load_embedder(dict(p.clip_model), device)
    text, text_name = load_text_model(p.mpnet_model, device)
    run_final_layer_variants(
        snakemake.input.select,
        snakemake.input.ground_truth,
        snakemake.output.json,
        variants,
        clip,
        text,
        clip_name=str(getattr(clip, "name", "")),
        text_name=text_name,
    )
