# Constants and input functions of evaluate.smk (kept apart: `snakemake --lint` wants rules and functions in
# separate files). Included by evaluate.smk.

HYPOTHESIZE_METHODS = config["hypothesize"].get("methods") or [config["hypothesize"]["method"]]
GROUND_TRUTH_MODELS = [m for m in MODELS if config["models"][m].get("ground_truth")]
ABLATE_NEURONS = config["evaluate"]["ablate_neurons"]
SWEEP_TAUS = sorted({float(t) for t in config["sweeps"].get("select.tau", [])})
SWEEP_TAU_NAMES = {f"{t:g}": t for t in SWEEP_TAUS}
# A sweep reuses the run's own Select/Hypothesize when they already cover its smallest tau.
SWEEP_REUSES_RUN = bool(SWEEP_TAUS) and (
    not config["select"]["enabled"] or SWEEP_TAUS[0] >= config["select"]["tau"]
)
SWEEP_HYPOTHESES = (
    "results/{model}/{probe}/{concept_set}/hypotheses"
    if SWEEP_REUSES_RUN
    else "results/sweeps/{model}/{probe}/{concept_set}/hypotheses"
)


def never_matching(names):
    """A wildcard regex over ``names`` (one that matches nothing when there are none)."""
    return "|".join(map(re.escape, names)) if names else "(?!)"


def raw_concept_embeddings(wildcards):
    """CLIP-Dissect embeds concept text raw: reuse Hypothesize's embeddings when its template is "{}"."""
    if config["hypothesize"]["template"] == "{}":
        return f"results/concepts/{wildcards.concept_set}/embeddings.h5"
    return f"results/concepts/{wildcards.concept_set}/clip_dissect/embeddings.h5"


def final_layer_inputs(wildcards):
    base = f"results/{wildcards.model}/{wildcards.probe}/{wildcards.concept_set}"
    ins = {
        "select": f"results/{wildcards.model}/{wildcards.probe}/select/summary.json",
        "ground_truth": os.path.expanduser(config["models"][wildcards.model]["ground_truth"]),
    }
    if "sieve" in HYPOTHESIZE_METHODS:
        ins["sieve_hypotheses"] = f"{base}/hypotheses"
        ins["sieve_neuron_concepts"] = f"{base}/neuron_concepts.csv"
    if "clip_dissect" in HYPOTHESIZE_METHODS:
        ins["clip_dissect_hypotheses"] = f"{base}/baselines/clip_dissect/hypotheses"
        ins["clip_dissect_neuron_concepts"] = f"{base}/baselines/clip_dissect/neuron_concepts.csv"
        ins["clip_dissect_labels"] = f"{base}/baselines/clip_dissect/labels.csv"
    return ins


def ground_truth_file(wildcards):
    gt = config["models"][wildcards.model].get("ground_truth")
    return [os.path.expanduser(gt)] if gt else []


def sweep_base(wildcards):
    if SWEEP_REUSES_RUN:
        return f"results/{wildcards.model}/{wildcards.probe}"
    return f"results/sweeps/{wildcards.model}/{wildcards.probe}"


def sweep_select_summary(wildcards):
    return f"{sweep_base(wildcards)}/select/summary.json"


def sweep_hypotheses(wildcards):
    return SWEEP_HYPOTHESES.format(
        model=wildcards.model, probe=wildcards.probe, concept_set=wildcards.concept_set
    )


def sweep_tau_value(wildcards):
    return SWEEP_TAU_NAMES[wildcards.tau]


def sweep_summaries(wildcards):
    return expand(
        "results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/verify/summary.json",
        model=wildcards.model,
        probe=wildcards.probe,
        concept_set=wildcards.concept_set,
        tau=list(SWEEP_TAU_NAMES),
    )
