"""Snakemake script: CLIP cos, mpnet cos and top-1 accuracy of every method's labels of a classifier layer."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.embedders import load_embedder
from sieve.devices import resolve_device
from sieve.evaluate.final_layer import load_text_model, run_final_layer_metrics
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    device = resolve_device(p.device)
    files = {}
    for method in p.methods:
        files[method] = {
            "hypotheses": snakemake.input[f"{method}_hypotheses"],
            "neuron_concepts": snakemake.input[f"{method}_neuron_concepts"],
        }
        if f"{method}_labels" in snakemake.input.keys():
            files[method]["labels"] = snakemake.input[f"{method}_labels"]
    clip = load_embedder(dict(p.clip_model), device)
    mpnet, mpnet_name = load_text_model(p.mpnet_model, device)
    run_final_layer_metrics(
        snakemake.input.select,
        snakemake.input.ground_truth,
        snakemake.output.json,
        files,
        clip,
        mpnet,
        clip_name=str(getattr(clip, "name", "")),
        mpnet_name=mpnet_name,
    )
