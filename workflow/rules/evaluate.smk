# Evaluation (sieve/evaluate.py, sieve/baselines.py): the paper's comparisons as workflow targets.
#
#   results/{model}/{probe}/clip_dissect/image_embeddings.h5          whole probe images, CLIP-embedded
#   results/concepts/{concept_set}/clip_dissect/embeddings.h5         raw concept text (when the template is not "{}")
#   results/{model}/{probe}/{concept_set}/baselines/clip_dissect/     hypotheses/, labels.csv, verify/, neuron_concepts.csv
#   results/{model}/{probe}/{concept_set}/final_layer_metrics.json    models with `ground_truth:` (layer fc)
#   results/{model}/{probe}/ablation/{neuron}.json|png                evaluate.ablate_neurons
#   results/sweeps/{model}/{probe}/...                                 sweeps: {select.tau: [...]}: one Select /
#                                                                      Hypothesize at the smallest tau (if the run's
#                                                                      own does not cover it), tau_{tau}/ per value
#   results/{model}/{probe}/{concept_set}/sweeps/tau.json             the sweep table (read by the report)
# Baseline hypotheses go through Verify's own rules and scripts (same generator, seeds and cache).

include: "evaluate_common.smk"


# ---------------------------------------------------------------------------------------------- CLIP-Dissect


rule embed_probe_images:
    """CLIP-Dissect: every probe image among any neuron's top images, embedded whole (CLIP's own resize and
    centre crop), for SoftWPMI."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        h5="results/{model}/{probe}/clip_dissect/image_embeddings.h5",
    log:
        "logs/{model}/{probe}/embed_probe_images.log",
    benchmark:
        "benchmarks/{model}/{probe}/embed_probe_images.tsv"
    params:
        probe=probe_spec,
        embedder=embedder_result_spec(),
        top_images=config["hypothesize"]["clip_dissect"]["top_images"],
        device=config["device"],
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        batch_size=config["embedder"]["batch_size"],
        workers=config["num_workers"],
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/embed_probe_images.py"


rule embed_concepts_raw:
    """CLIP-Dissect: text embeddings of the raw concepts (only needed when hypothesize.template is not "{}")."""
    input:
        json="results/concepts/{concept_set}/concepts.json",
    output:
        h5="results/concepts/{concept_set}/clip_dissect/embeddings.h5",
    log:
        "logs/concepts/{concept_set}/embed_concepts_raw.log",
    benchmark:
        "benchmarks/concepts/{concept_set}/embed_concepts_raw.tsv"
    params:
        embedder=config["embedder"],
        template="{}",
        device=config["device"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/embed_concepts.py"


rule clip_dissect:
    """CLIP-Dissect's SoftWPMI label of every neuron; hypotheses of the selected ones for Verify."""
    input:
        images=rules.embed_probe_images.output.h5,
        select="results/{model}/{probe}/select/summary.json",
        concepts="results/concepts/{concept_set}/concepts.json",
        embeddings=raw_concept_embeddings,
    output:
        hypotheses=directory("results/{model}/{probe}/{concept_set}/baselines/clip_dissect/hypotheses"),
        labels="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/labels.csv",
    log:
        "logs/{model}/{probe}/{concept_set}/clip_dissect.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/clip_dissect.tsv"
    params:
        alpha=config["hypothesize"]["clip_dissect"]["alpha"],
        lam=config["hypothesize"]["clip_dissect"]["lambda"],
        top_images=config["hypothesize"]["clip_dissect"]["top_images"],
    threads: 4
    resources:
        mem_mb=16000,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/clip_dissect.py"


rule clip_dissect_activation_rate:
    """Verify for CLIP-Dissect's labels: Verify's own script, the same generated images and thresholds."""
    input:
        hypotheses="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/hypotheses",
        select="results/{model}/{probe}/select/summary.json",
        manifests=get_shard_manifests,
    output:
        ar="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/verify/ar.csv",
        summary="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/verify/summary.json",
        generated="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/verify/generated.json",
        neuron_concepts="results/{model}/{probe}/{concept_set}/baselines/clip_dissect/neuron_concepts.csv",
    log:
        "logs/{model}/{probe}/{concept_set}/clip_dissect_activation_rate.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/clip_dissect_activation_rate.tsv"
    params:
        enabled=config["verify"]["enabled"],
        method="clip_dissect",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/activation_rate.py"


if "clip_dissect" in HYPOTHESIZE_METHODS:
    HYPOTHESES_DIRS.append("results/{model}/{probe}/{concept_set}/baselines/clip_dissect/hypotheses")
    STAGE_OUTPUTS.append("results/{model}/{probe}/{concept_set}/baselines/clip_dissect/verify/summary.json")
    STAGE_OUTPUTS.append("results/{model}/{probe}/{concept_set}/baselines/clip_dissect/neuron_concepts.csv")

if "sieve" not in HYPOTHESIZE_METHODS:  # `method: clip_dissect` alone: no SIEVE hypotheses, no SIEVE Verify
    HYPOTHESES_DIRS[:] = [
        d for d in HYPOTHESES_DIRS if d != "results/{model}/{probe}/{concept_set}/hypotheses"
    ]
    STAGE_OUTPUTS[:] = [
        p
        for p in STAGE_OUTPUTS
        if not (
            p.startswith("results/{model}/{probe}/{concept_set}/")
            and not p.startswith("results/{model}/{probe}/{concept_set}/baselines/")
        )
        and not p.startswith("results/{model}/{probe}/grids")
    ]


# ------------------------------------------------------------------------------------------ final-layer metrics


rule final_layer_metrics:
    """CLIP cos, mpnet cos and top-1 accuracy of every method's labels of a classifier layer against the
    ground-truth class names, under CLIP-Dissect's and WWW's protocols."""
    input:
        unpack(final_layer_inputs),
    output:
        json="results/{model}/{probe}/{concept_set}/final_layer_metrics.json",
    log:
        "logs/{model}/{probe}/{concept_set}/final_layer_metrics.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/final_layer_metrics.tsv"
    wildcard_constraints:
        model=never_matching(GROUND_TRUTH_MODELS),
    params:
        clip_model=config["evaluate"].get("clip_model") or config["embedder"],
        mpnet_model=config["evaluate"]["mpnet_model"],
        methods=HYPOTHESIZE_METHODS,
        device=config["device"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/final_layer_metrics.py"


STAGE_OUTPUTS.extend(
    expand(
        "results/{model}/{probe}/{concept_set}/final_layer_metrics.json",
        model=GROUND_TRUTH_MODELS,
        probe=PROBES,
        concept_set=CONCEPT_SETS,
    )
)


# ------------------------------------------------------------------------------------------- neuron ablation


rule ablate_neurons:
    """Zero each neuron of evaluate.ablate_neurons; per-class accuracy drop on the labelled probe set."""
    input:
        ground_truth_file,
    output:
        ablation=report(
            directory("results/{model}/{probe}/ablation"),
            patterns=["{neuron}.png"],
            caption="../report/ablation.rst",
            category="Evaluate",
            subcategory="{model} / {probe}",
        ),
    log:
        "logs/{model}/{probe}/ablate_neurons.log",
    benchmark:
        "benchmarks/{model}/{probe}/ablate_neurons.tsv"
    params:
        model=probe_model_spec,
        probe=probe_spec,
        neurons=ABLATE_NEURONS,
        device=config["device"],
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        batch_size=model_batch_size,
        workers=config["num_workers"],
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/ablate_neurons.py"


if ABLATE_NEURONS:
    STAGE_OUTPUTS.append("results/{model}/{probe}/ablation")


# -------------------------------------------------------------------------------------------------- sweeps


rule sweep_select:
    """A tau sweep's Select at its smallest tau (from the run's activations: the probe never reruns)."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        summary="results/sweeps/{model}/{probe}/select/summary.json",
        neurons=directory("results/sweeps/{model}/{probe}/select/neurons"),
    log:
        "logs/sweeps/{model}/{probe}/select_neurons.log",
    benchmark:
        "benchmarks/sweeps/{model}/{probe}/select_neurons.tsv"
    params:
        tau=SWEEP_TAUS[0] if SWEEP_TAUS else config["select"]["tau"],
        top_n=config["select"]["top_n"],
        enabled=config["select"]["enabled"],
        negative=config["select"]["negative"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/select_neurons.py"


rule sweep_embed_crops:
    """Crops and CLIP embeddings of the sweep's neurons (Hypothesize's own script)."""
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.sweep_select.output.neurons,
    output:
        h5="results/sweeps/{model}/{probe}/crops/crops.h5",
    log:
        "logs/sweeps/{model}/{probe}/embed_crops.log",
    benchmark:
        "benchmarks/sweeps/{model}/{probe}/embed_crops.tsv"
    params:
        probe=probe_spec,
        embedder=embedder_result_spec(),
        crop=config["hypothesize"]["crop"],
        device=config["device"],
    threads: 4
    resources:
        mem_mb=16000,
        runtime=120,
        batch_size=config["embedder"]["batch_size"],
        workers=config["num_workers"],
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/embed_crops.py"


rule sweep_cluster_crops:
    """Ward clusters of the sweep's neurons (Hypothesize's own script)."""
    input:
        h5=rules.sweep_embed_crops.output.h5,
    output:
        clusters=directory("results/sweeps/{model}/{probe}/clusters"),
    log:
        "logs/sweeps/{model}/{probe}/cluster_crops.log",
    benchmark:
        "benchmarks/sweeps/{model}/{probe}/cluster_crops.tsv"
    params:
        cluster=config["hypothesize"]["cluster"],
        k_max=config["hypothesize"]["k_max"],
        silhouette_floor=config["hypothesize"]["silhouette_floor"],
        min_cluster_size=config["hypothesize"]["min_cluster_size"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/cluster_crops.py"


rule sweep_hypothesize:
    """Concept hypotheses of the sweep's neurons (Hypothesize's own script)."""
    input:
        clusters=rules.sweep_cluster_crops.output.clusters,
        crops=rules.sweep_embed_crops.output.h5,
        concepts="results/concepts/{concept_set}/concepts.json",
        embeddings="results/concepts/{concept_set}/embeddings.h5",
    output:
        hypotheses=directory("results/sweeps/{model}/{probe}/{concept_set}/hypotheses"),
    log:
        "logs/sweeps/{model}/{probe}/{concept_set}/hypothesize.log",
    benchmark:
        "benchmarks/sweeps/{model}/{probe}/{concept_set}/hypothesize.tsv"
    params:
        concepts_per_cluster=config["hypothesize"]["concepts_per_cluster"],
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/hypothesize.py"


rule sweep_tau:
    """One tau of a sweep: its selection, the subset of hypotheses, and Verify's AR and filter on the shared
    generation cache."""
    input:
        select=sweep_select_summary,
        hypotheses=sweep_hypotheses,
        manifests=get_shard_manifests,
    output:
        select="results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/select_summary.json",
        hypotheses=directory("results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/hypotheses"),
        ar="results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/verify/ar.csv",
        summary="results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/verify/summary.json",
        generated="results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/verify/generated.json",
        neuron_concepts="results/sweeps/{model}/{probe}/{concept_set}/tau_{tau}/neuron_concepts.csv",
    log:
        "logs/sweeps/{model}/{probe}/{concept_set}/tau_{tau}.log",
    benchmark:
        "benchmarks/sweeps/{model}/{probe}/{concept_set}/tau_{tau}.tsv"
    wildcard_constraints:
        tau=never_matching(SWEEP_TAU_NAMES),
    params:
        tau=sweep_tau_value,
        enabled=config["verify"]["enabled"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/sweep_tau.py"


rule sweep_table:
    """The tau sweep as one table (selected neurons, mean AR initial / kept, verified share per tau)."""
    input:
        summaries=sweep_summaries,
    output:
        json="results/{model}/{probe}/{concept_set}/sweeps/tau.json",
    log:
        "logs/{model}/{probe}/{concept_set}/sweep_table.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/sweep_table.tsv"
    params:
        taus=list(SWEEP_TAU_NAMES.values()),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/sweep_table.py"


if SWEEP_TAUS:
    STAGE_OUTPUTS.append("results/{model}/{probe}/{concept_set}/sweeps/tau.json")
    # the sweep's hypotheses need generated images even when SIEVE's own Verify is off (`method: clip_dissect`)
    if SWEEP_HYPOTHESES not in HYPOTHESES_DIRS:
        HYPOTHESES_DIRS.append(SWEEP_HYPOTHESES)
