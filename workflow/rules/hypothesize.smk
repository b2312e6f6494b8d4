# Hypothesize: concept sets and their text embeddings, crops of each selected neuron's top images with their
# CLIP embeddings (one batched job per model/probe), Ward clusters per neuron, top concepts per cluster.
# Concept text never appears in a path or a wildcard: concepts are identified by a hash inside the files.


rule prepare_concepts:
    """Read, clean (blank lines, duplicates) and hash a concept set; fetch url lists once, checksum checked."""
    input:
        concept_set_inputs,
    output:
        json=paths.CONCEPTS_JSON,
    log:
        paths.log(paths.CONCEPTS, "prepare_concepts"),
    benchmark:
        paths.benchmark(paths.CONCEPTS, "prepare_concepts")
    group:
        "concepts"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(20),
    params:
        spec=concept_set_spec,
        resources=paths.CONCEPT_DOWNLOADS,
        packaged_world=concept_set_packaged_world,
    script:
        "../scripts/prepare_concepts.py"


rule embed_concepts:
    """CLIP text embeddings of a concept set (the template filled with each concept), L2-normalised."""
    input:
        json=rules.prepare_concepts.output.json,
    output:
        h5=paths.CONCEPT_EMBEDDINGS,
    log:
        paths.log(paths.CONCEPTS, "embed_concepts"),
    benchmark:
        paths.benchmark(paths.CONCEPTS, "embed_concepts")
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=2,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(30),
        batch_size=config["embedder"]["batch_size"],
    params:
        embedder=embedder_result_spec(),
        template=verbatim(config["hypothesize"]["template"]),
        device=config["device"],
    script:
        "../scripts/embed_concepts.py"


rule embed_crops:
    """Crop the most activated region of each selected neuron's top images and CLIP-embed every crop."""
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.select_neurons.output.neurons,
    output:
        h5=paths.CROPS,
    log:
        paths.log(paths.MODEL_PROBE, "embed_crops"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "embed_crops")
    conda:
        "../../envs/gpu.yaml"
    threads: config["probe"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["probe"]["threads"],
        mem_mb=per_attempt(16000),
        runtime=per_attempt(120),
        batch_size=config["embedder"]["batch_size"],
        workers=config["num_workers"],
    params:
        probe=probe_spec,
        embedder=embedder_result_spec(),
        crop=config["hypothesize"]["crop"],
        device=config["device"],
    script:
        "../scripts/embed_crops.py"


rule cluster_crops:
    """Per neuron: Ward clustering of its crop embeddings, k chosen by silhouette, small clusters dropped."""
    input:
        h5=rules.embed_crops.output.h5,
    output:
        clusters=directory(paths.CLUSTERS),
    log:
        paths.log(paths.MODEL_PROBE, "cluster_crops"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "cluster_crops")
    group:
        "hypothesize"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    params:
        cluster=config["hypothesize"]["cluster"],
        k_max=config["hypothesize"]["k_max"],
        silhouette_floor=config["hypothesize"]["silhouette_floor"],
        min_cluster_size=config["hypothesize"]["min_cluster_size"],
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
        hypotheses=directory(paths.HYPOTHESES),
    log:
        paths.log(paths.RUN, "hypothesize"),
    benchmark:
        paths.benchmark(paths.RUN, "hypothesize")
    group:
        "hypothesize"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(60),
    params:
        concepts_per_cluster=config["hypothesize"]["concepts_per_cluster"],
    script:
        "../scripts/hypothesize.py"


rule neuron_grids:
    """Per neuron: its top images with crop boxes and activation maps, one row block per cluster (for the report)."""
    input:
        clusters=rules.cluster_crops.output.clusters,
        crops=rules.embed_crops.output.h5,
        activations=rules.probe_activations.output.h5,
    output:
        grids=report(
            directory(paths.GRIDS),
            patterns=["{neuron}.jpg"],
            caption="../report/neuron_grids.rst",
            category="Hypothesize",
            subcategory="{model} / {probe}",
        ),
    log:
        paths.log(paths.MODEL_PROBE, "neuron_grids"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "neuron_grids")
    group:
        "hypothesize"
    conda:
        "../../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(60),
        workers=config["num_workers"],
    params:
        probe=probe_spec,
        tile=80,
    script:
        "../scripts/neuron_grids.py"
