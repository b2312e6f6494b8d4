"""Snakemake script: zero each chosen neuron; per-class accuracy drop on the labelled probe set."""

import use_checkout  # noqa: F401  (this checkout's sieve first on sys.path: before any sieve import)

from sieve.backends.imagesets import open_image_set
from sieve.backends.models import load_model
from sieve.devices import resolve_device
from sieve.evaluate.final_layer import read_ground_truth
from sieve.evaluate.neuron_ablation import best_verified_neurons, run_neuron_ablation
from sieve.io import script_logging

with script_logging(snakemake.log[0]):
    p = snakemake.params
    choice = p.neurons
    if isinstance(choice, dict):  # {best_verified: N}: the run's own best verified neurons
        neurons = best_verified_neurons(
            snakemake.input.verified[0], int(choice["best_verified"]), snakemake.wildcards.model
        )
    else:
        neurons = [int(n) for n in choice]
    model = load_model(snakemake.wildcards.model, dict(p.model), resolve_device(p.device))
    probe = open_image_set(snakemake.wildcards.probe, dict(p.probe))
    from_truth = len(snakemake.input.ground_truth) > 0
    names = read_ground_truth(snakemake.input.ground_truth[0]) if from_truth else probe.classes
    run_neuron_ablation(
        model,
        probe,
        neurons,
        snakemake.output.ablation,
        class_names=names,
        batch_size=snakemake.resources.batch_size,
        num_workers=min(snakemake.resources.workers, max(0, snakemake.threads - 1)),
        strict_names=from_truth,
    )
