"""Stage ablations: SIEVE with one stage switched off, beside the full method (any model, real or synthetic).

One row per variant (:data:`STAGE_VARIANTS`): ``no_select`` (every neuron hypothesised), ``no_cluster`` (one
cluster of all crops), ``no_verify`` (every hypothesis kept) and ``none`` (all three switched off: every
neuron, one cluster each, every hypothesis kept; the paper's first ablation row). The AR columns come from each variant's Verify
summary; for a synthetic model, planted-concept recovery comes from :mod:`.truth`.

Not to be confused with neuron ablation (:mod:`.neuron_ablation`), which zeroes a neuron of the model.
"""

from __future__ import annotations

import logging
from typing import Any

from ..io import read_json, write_json
from .truth import compare_with_truth

log = logging.getLogger(__name__)

STAGE_VARIANTS = {  # name: (label, select.enabled, hypothesize.cluster, verify.enabled)
    "full": ("all three (sieve)", True, True, True),
    "no_select": ("no Select", False, True, True),
    "no_cluster": ("no Cluster", True, False, True),
    "no_verify": ("no Verify", True, True, False),
    "none": ("none of the three", False, False, False),
}


def run_stage_ablations(
    variants: dict[str, dict[str, str]], out_json: str, spec: str | None = None, synthetic: bool = True
) -> dict[str, Any]:
    """The stage-ablation table: one row per variant (``full``, ``no_select``, ``no_cluster``, ``no_verify``, ``none``) from its
    select summary, verify summary, ar.csv and neuron_concepts.csv; recovery only for a synthetic model."""
    table = []
    for name in STAGE_VARIANTS:
        if name not in variants:
            continue
        paths = variants[name]
        label, sel, clu, ver = STAGE_VARIANTS[name]
        vs = read_json(paths["verify_summary"])
        row: dict[str, Any] = {
            "variant": name,
            "label": label,
            "select": sel,
            "cluster": clu,
            "verify": ver,
            "n_hypotheses": vs.get("n_hypotheses"),
            "n_kept": vs.get("n_kept"),
            "mean_ar_initial": vs.get("mean_ar_initial"),
            "mean_ar_kept": vs.get("mean_ar_kept"),
            # the AR of what the variant finally reports as explanations
            "mean_ar": vs.get("mean_ar_kept") if ver else vs.get("mean_ar_initial"),
            "n_selected": vs.get("n_selected"),
            "n_verified": vs.get("n_verified"),
            "recovery": None,
            "neurons_recovered_share": None,
            "n_wrong_kept": None,
        }
        if synthetic:
            _, s = compare_with_truth(
                spec, paths["select"], paths["neuron_concepts"], paths["ar"], paths["verify_summary"]
            )
            row.update(
                recovery=s["recovery"],
                neurons_recovered_share=s["neurons_recovered_share"],
                n_wrong_kept=s["hypotheses"]["n_wrong_kept"],
                select_correct=s["select_correct"],
            )
        table.append(row)
    out = {"synthetic": synthetic, "spec": spec if synthetic else None, "variants": table}
    write_json(out_json, out)
    for r in table:
        log.info("stage ablation %-10s mean AR %s, recovery %s", r["variant"], r["mean_ar"], r["recovery"])
    return out
