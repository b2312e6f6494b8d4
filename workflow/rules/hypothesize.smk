# Hypothesize: concept sets and their text embeddings, crops of each selected neuron's top images with their
# CLIP embeddings (one batched job per model/probe), Ward clusters per neuron, top concepts per cluster.
# Concept text never appears in a path or a wildcard: concepts are identified by a hash inside the files.


rule prepare_concepts:
    """Read, clean (blank lines, duplicates) and hash a concept set; fetch url lists once, checksum checked."""
    input:
        concept_set_inputs,
    output:
        json="results/concepts/{concept_set}/concepts.json",
    log:
        "logs/concepts/{concept_set}/prepare_concepts.log",
    benchmark:
        "benchmarks/concepts/{concept_set}/prepare_concepts.tsv"
    params:
        spec=concept_set_spec,
        resources="resources/concepts",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/prepare_concepts.py"


rule embed_concepts:
    """CLIP text embeddings of a concept set (the template filled with each concept), L2-normalised."""
    input:
        json=rules.prepare_concepts.output.json,
    output:
        h5="results/concepts/{concept_set}/embeddings.h5",
    log:
        "logs/concepts/{concept_set}/embed_concepts.log",
    benchmark:
        "benchmarks/concepts/{concept_set}/embed_concepts.tsv"
    params:
        embedder=embedder_result_spec(),
        template=config["hypothesize"]["template"],
        device=config["device"],
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
        batch_size=config["embedder"]["batch_size"],
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/embed_concepts.py"


rule embed_crops:
    """Crop the most activated region of each selected neuron's top images and CLIP-embed every crop."""
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.select_neurons.output.neurons,
    output:
        h5="results/{model}/{probe}/crops/crops.h5",
    log:
        "logs/{model}/{probe}/embed_crops.log",
    benchmark:
        "benchmarks/{model}/{probe}/embed_crops.tsv"
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


rule cluster_crops:
    """Per neuron: Ward clustering of its crop embeddings, k chosen by silhouette, small clusters dropped."""
    input:
        h5=rules.embed_crops.output.h5,
    output:
        clusters=directory("results/{model}/{probe}/clusters"),
    log:
        "logs/{model}/{probe}/cluster_crops.log",
    benchmark:
        "benchmarks/{model}/{probe}/cluster_crops.tsv"
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


rule hypothesize:
    """Per kept cluster: the concepts whose text embedding is closest (mean cosine) to the cluster's crops."""
    input:
        clusters=rules.cluster_crops.output.clusters,
        crops=rules.embed_crops.output.h5,
        concepts=rules.prepare_concepts.output.json,
        embeddings=rules.embed_concepts.output.h5,
    output:
        hypotheses=directory("results/{model}/{probe}/{concept_set}/hypotheses"),
    log:
        "logs/{model}/{probe}/{concept_set}/hypothesize.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/hypothesize.tsv"
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


rule neuron_grids:
    """Per neuron: its top images with crop boxes, one row block per cluster (for the report)."""
    input:
        clusters=rules.cluster_crops.output.clusters,
        crops=rules.embed_crops.output.h5,
    output:
        grids=report(
            directory("results/{model}/{probe}/grids"),
            patterns=["{neuron}.png"],
            caption="../report/neuron_grids.rst",
            category="Hypothesize",
            subcategory="{model} / {probe}",
        ),
    log:
        "logs/{model}/{probe}/neuron_grids.log",
    benchmark:
        "benchmarks/{model}/{probe}/neuron_grids.tsv"
    params:
        probe=probe_spec,
        tile=96,
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        workers=config["num_workers"],
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/neuron_grids.py"


STAGE_OUTPUTS.append("results/{model}/{probe}/grids")
