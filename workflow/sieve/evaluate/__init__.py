"""Evaluation: the paper's comparisons as workflow targets, one module each.

- :mod:`.clip_dissect`     the CLIP-Dissect baseline (SoftWPMI labels, verified like SIEVE's hypotheses)
- :mod:`.final_layer`      final-layer metrics: every method's labels against the model's class names
- :mod:`.neuron_ablation`  zero one neuron, measure the per-class accuracy drop (the paper's Fig. 6)
- :mod:`.sweep`            the tau sweep (the paper's Tables 4/5) on the shared generation cache
- :mod:`.stage_ablations`  the no Select / no Cluster / no Verify table (any model; recovery for synthetic ones)
- :mod:`.truth`            a synthetic world's planted truth beside the result of every method

"Neuron ablation" (a neuron zeroed in the model) and "stage ablations" (a stage of SIEVE switched off) are two
different things and keep distinct names throughout.
"""

from __future__ import annotations


class EvaluateError(ValueError):
    """Bad input for an evaluation: the message names the file, neuron, class or config key."""
