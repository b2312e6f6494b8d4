# Truth and ablations.
#
#   results/{model}/{probe}/{concept_set}/truth.csv, truth_summary.json     planted truth beside the result
#                                                                            (synthetic models only)
#   results/ablations/{model}/{probe}/{variant}/...                         Select/crops/clusters of a variant
#   results/ablations/{model}/{probe}/{concept_set}/{variant}/...           hypotheses, verify of a variant
#   results/ablations/generate/requests.json, shards/{shard}.json           generation for the variants (the
#                                                                            content-addressed cache is shared)
#   results/ablations/{model}/{probe}/{concept_set}/ablations.json          the ablation table
#
# Variants: no_select (select.enabled false), no_cluster (hypothesize.cluster false), no_verify (verify.enabled
# false); "full" is the main run. Each variant reruns only the stages its switch changes and reuses the probe,
# the activations, the crops of the main run and every image already generated.
# `snakemake ablation` builds the tables; `evaluate: {ablations: true}` adds them to the default target.

include: "truth_common.smk"


rule truth:
    """The planted truth of a synthetic model beside what sieve found: selected, verified, recovered."""
    input:
        select="results/{model}/{probe}/select/summary.json",
        ar="results/{model}/{probe}/{concept_set}/verify/ar.csv",
        verify_summary="results/{model}/{probe}/{concept_set}/verify/summary.json",
        neuron_concepts="results/{model}/{probe}/{concept_set}/neuron_concepts.csv",
        baselines=get_truth_baselines,
        world=world_spec_input,
    output:
        csv="results/{model}/{probe}/{concept_set}/truth.csv",
        summary="results/{model}/{probe}/{concept_set}/truth_summary.json",
    log:
        "logs/{model}/{probe}/{concept_set}/truth.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/truth.tsv"
    params:
        spec=world_spec,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/truth.py"


rule ablation_select_neurons:
    """no Select: every neuron that is not dead goes on to Hypothesize."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        summary=f"{ABLATION_ROOT}/{{model}}/{{probe}}/no_select/select/summary.json",
        neurons=directory(f"{ABLATION_ROOT}/{{model}}/{{probe}}/no_select/select/neurons"),
    log:
        "logs/ablations/{model}/{probe}/no_select/select_neurons.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/no_select/select_neurons.tsv"
    params:
        tau=config["select"]["tau"],
        top_n=config["select"]["top_n"],
        enabled=False,
        negative=config["select"]["negative"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/select_neurons.py"


rule ablation_embed_crops:
    """no Select: crops and embeddings of every neuron's top images."""
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.ablation_select_neurons.output.neurons,
    output:
        h5=f"{ABLATION_ROOT}/{{model}}/{{probe}}/no_select/crops/crops.h5",
    log:
        "logs/ablations/{model}/{probe}/no_select/embed_crops.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/no_select/embed_crops.tsv"
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


rule ablation_cluster_crops:
    """no Select: the usual clusters over all neurons; no Cluster: one cluster per neuron."""
    input:
        h5=ablation_crops,
    output:
        clusters=directory(f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{variant}}/clusters"),
    log:
        "logs/ablations/{model}/{probe}/{variant}/cluster_crops.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/{variant}/cluster_crops.tsv"
    params:
        cluster=ablation_cluster_switch,
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


rule ablation_hypothesize:
    """Top concepts per cluster of a variant."""
    input:
        clusters=rules.ablation_cluster_crops.output.clusters,
        crops=ablation_crops,
        concepts=rules.prepare_concepts.output.json,
        embeddings=rules.embed_concepts.output.h5,
    output:
        hypotheses=directory(f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/hypotheses"),
    log:
        "logs/ablations/{model}/{probe}/{concept_set}/{variant}/hypothesize.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/{concept_set}/{variant}/hypothesize.tsv"
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


rule ablation_generation_requests:
    """Concepts the variants hypothesise, split into shards (what the main run generated is reused)."""
    input:
        hypotheses=ablation_hypotheses_dirs,
    output:
        requests=f"{ABLATION_ROOT}/generate/requests.json",
    log:
        "logs/ablations/generate/generation_requests.log",
    benchmark:
        "benchmarks/ablations/generate/generation_requests.tsv"
    params:
        prompt=config["generator"]["prompt"],
        shards=config["generator"]["shards"],
        generator=config["generator"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/generation_requests.py"


rule ablation_generate_shard:
    """Generate (or find in the shared cache) the variants' concepts and measure every model on them."""
    input:
        requests=rules.ablation_generation_requests.output.requests,
    output:
        manifest=f"{ABLATION_ROOT}/generate/shards/{{shard}}.json",
    log:
        "logs/ablations/generate/generate_shard_{shard}.log",
    benchmark:
        "benchmarks/ablations/generate/generate_shard_{shard}.tsv"
    params:
        generator=config["generator"],
        models=config["models"],
        device=config["device"],
        cache=GENERATE_CACHE,
    threads: 4
    resources:
        mem_mb=32000,
        runtime=360,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/generate_shard.py"


rule ablation_activation_rate:
    """Activation Rate and the filter of a variant (no Verify keeps every hypothesis)."""
    input:
        hypotheses=ablation_hypotheses,
        select=ablation_select,
        manifests=ablation_manifests,
    output:
        ar=f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/verify/ar.csv",
        summary=f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/verify/summary.json",
        generated=f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/verify/generated.json",
        neuron_concepts=f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/{{variant}}/neuron_concepts.csv",
    log:
        "logs/ablations/{model}/{probe}/{concept_set}/{variant}/activation_rate.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/{concept_set}/{variant}/activation_rate.tsv"
    params:
        enabled=ablation_verify_switch,
        method="sieve",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/activation_rate.py"


rule ablation_table:
    """The ablation table: no Select / no Cluster / no Verify / all three, mean AR and (synthetic) recovery."""
    input:
        unpack(ablation_table_inputs),
    output:
        json=f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/ablations.json",
    log:
        "logs/ablations/{model}/{probe}/{concept_set}/ablation_table.log",
    benchmark:
        "benchmarks/ablations/{model}/{probe}/{concept_set}/ablation_table.tsv"
    params:
        spec=ablation_world_spec,
        synthetic=model_is_synthetic,
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/ablation_table.py"


rule ablation:
    """`snakemake ablation`: the ablation tables of every model / probe / concept set."""
    input:
        get_ablation_outputs(),


for _m in synthetic_models():
    STAGE_OUTPUTS.append(f"results/{_m}/{{probe}}/{{concept_set}}/truth.csv")
    STAGE_OUTPUTS.append(f"results/{_m}/{{probe}}/{{concept_set}}/truth_summary.json")
if config["evaluate"]["ablations"]:
    STAGE_OUTPUTS.append(f"{ABLATION_ROOT}/{{model}}/{{probe}}/{{concept_set}}/ablations.json")
