# Constants and input functions of truth.smk (kept apart: `snakemake --lint` wants rules and functions in
# separate files). Included by truth.smk.

from snakemake.exceptions import WorkflowError

ABLATION_VARIANTS = ["no_select", "no_cluster", "no_verify"]
ABLATION_ROOT = "results/ablations"


wildcard_constraints:
    variant="|".join(ABLATION_VARIANTS),


def synthetic_models():
    return [m for m in MODELS if config["models"][m].get("source") == "synthetic"]


def world_spec(wildcards):
    """The world spec of a synthetic model ('default' when the model names none)."""
    spec = config["models"][wildcards.model]
    if spec.get("source") != "synthetic":
        raise WorkflowError(
            f"truth of model {wildcards.model!r}: only synthetic models (source: synthetic) have a planted truth"
        )
    return spec.get("spec", "default")


def world_spec_input(wildcards):
    """The world spec file itself, so that editing it reruns the truth."""
    return world_spec_file(world_spec(wildcards))


def model_is_synthetic(wildcards):
    return config["models"][wildcards.model].get("source") == "synthetic"


def ablation_world_spec(wildcards):
    return config["models"][wildcards.model].get("spec", "default")


def ablation_crops(wildcards):
    if wildcards.variant == "no_select":
        return f"{ABLATION_ROOT}/{wildcards.model}/{wildcards.probe}/no_select/crops/crops.h5"
    return f"results/{wildcards.model}/{wildcards.probe}/crops/crops.h5"


def ablation_cluster_switch(wildcards):
    return wildcards.variant != "no_cluster"


def ablation_select(wildcards):
    if wildcards.variant == "no_select":
        return f"{ABLATION_ROOT}/{wildcards.model}/{wildcards.probe}/no_select/select/summary.json"
    return f"results/{wildcards.model}/{wildcards.probe}/select/summary.json"


def ablation_hypotheses(wildcards):
    if wildcards.variant == "no_verify":
        return f"results/{wildcards.model}/{wildcards.probe}/{wildcards.concept_set}/hypotheses"
    return f"{ABLATION_ROOT}/{wildcards.model}/{wildcards.probe}/{wildcards.concept_set}/{wildcards.variant}/hypotheses"


def ablation_manifests(wildcards):
    if wildcards.variant == "no_verify":
        return get_shard_manifests(wildcards)
    return expand(f"{ABLATION_ROOT}/generate/shards/{{shard}}.json", shard=range(config["generator"]["shards"]))


def ablation_verify_switch(wildcards):
    return wildcards.variant != "no_verify"


def ablation_hypotheses_dirs(wildcards):
    return expand(
        f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/hypotheses",
        model=MODELS,
        probe=PROBES,
        concept_set=CONCEPT_SETS,
        variant=["no_select", "no_cluster"],
    )


def ablation_table_inputs(wildcards):
    main = f"results/{wildcards.model}/{wildcards.probe}"
    main_cs = f"{main}/{wildcards.concept_set}"
    ab = f"{ABLATION_ROOT}/{wildcards.model}/{wildcards.probe}"
    ab_cs = f"{ab}/{wildcards.concept_set}"
    files = {
        "full_select": f"{main}/select/summary.json",
        "full_verify_summary": f"{main_cs}/verify/summary.json",
        "full_ar": f"{main_cs}/verify/ar.csv",
        "full_neuron_concepts": f"{main_cs}/neuron_concepts.csv",
    }
    for v in ABLATION_VARIANTS:
        files[f"{v}_select"] = f"{ab}/no_select/select/summary.json" if v == "no_select" else files["full_select"]
        files[f"{v}_verify_summary"] = f"{ab_cs}/{v}/verify/summary.json"
        files[f"{v}_ar"] = f"{ab_cs}/{v}/verify/ar.csv"
        files[f"{v}_neuron_concepts"] = f"{ab_cs}/{v}/neuron_concepts.csv"
    if model_is_synthetic(wildcards):
        files["world"] = world_spec_file(ablation_world_spec(wildcards))
    return files


def get_ablation_outputs():
    return expand(
        f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/ablations.json",
        model=MODELS,
        probe=PROBES,
        concept_set=CONCEPT_SETS,
    )
