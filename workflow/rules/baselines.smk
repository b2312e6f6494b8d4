# The CLIP-Dissect baseline (sieve/evaluate/clip_dissect.py): SoftWPMI labels of every neuron from whole-image and raw
# concept-text embeddings. Its hypotheses go through Verify's own rules and scripts (same generator, seeds and
# cache): the rules that differ from Hypothesize's and Verify's only in their files are derived from them.


rule embed_probe_images:
    """CLIP-Dissect: every probe image among any neuron's top images, embedded whole (CLIP's own resize and
    centre crop), for SoftWPMI."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        h5=paths.CLIP_DISSECT_IMAGE_EMBEDDINGS,
    log:
        paths.log(paths.MODEL_PROBE, "embed_probe_images"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "embed_probe_images")
    conda:
        "../../envs/gpu.yaml"
    threads: 4
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=per_attempt(16000),
        runtime=per_attempt(120),
        batch_size=config["embedder"]["batch_size"],
        workers=config["num_workers"],
    params:
        probe=probe_spec,
        embedder=embedder_result_spec(),
        top_images=config["hypothesize"]["clip_dissect"]["top_images"],
        device=config["device"],
    script:
        "../scripts/embed_probe_images.py"


# Text embeddings of the raw concepts (only needed when hypothesize.template is not "{}").
use rule embed_concepts as embed_concepts_raw with:
    output:
        h5=paths.CLIP_DISSECT_CONCEPT_EMBEDDINGS,
    log:
        paths.log(paths.CONCEPTS, "embed_concepts_raw"),
    benchmark:
        paths.benchmark(paths.CONCEPTS, "embed_concepts_raw")
    params:
        template="{}",


rule clip_dissect:
    """CLIP-Dissect's SoftWPMI label of every neuron; hypotheses of the selected ones for Verify."""
    input:
        images=rules.embed_probe_images.output.h5,
        select=rules.select_neurons.output.summary,
        concepts=rules.prepare_concepts.output.json,
        embeddings=raw_concept_embeddings,
    output:
        hypotheses=directory(paths.hypotheses(paths.CLIP_DISSECT)),
        labels=paths.CLIP_DISSECT_LABELS,
    log:
        paths.log(paths.RUN, "clip_dissect"),
    benchmark:
        paths.benchmark(paths.RUN, "clip_dissect")
    group:
        "clip_dissect"
    conda:
        "../../envs/cpu.yaml"
    threads: 4
    resources:
        mem_mb=per_attempt(16000),
        runtime=per_attempt(60),
    params:
        alpha=config["hypothesize"]["clip_dissect"]["alpha"],
        lam=config["hypothesize"]["clip_dissect"]["lambda"],
        top_images=config["hypothesize"]["clip_dissect"]["top_images"],
    script:
        "../scripts/clip_dissect.py"


# Verify for CLIP-Dissect's labels: Verify's own script, the same generated images and thresholds.
use rule activation_rate as clip_dissect_activation_rate with:
    input:
        hypotheses=rules.clip_dissect.output.hypotheses,
        select=rules.select_neurons.output.summary,
        manifests=get_shard_manifests,
        concepts=rules.prepare_concepts.output.json,
    output:
        **paths.verify_files(paths.CLIP_DISSECT),
    log:
        paths.log(paths.RUN, "clip_dissect_activation_rate"),
    benchmark:
        paths.benchmark(paths.RUN, "clip_dissect_activation_rate")
    params:
        method="clip_dissect",
