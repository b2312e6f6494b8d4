# Evaluation (sieve/evaluate/final_layer.py, neuron_ablation.py): final-layer metrics of models with
# `ground_truth:` (layer fc; for every swept tau and stage-ablation variant too) and the per-class accuracy drop of zeroed neurons (evaluate.ablate_neurons: model -> ids).
# The CLIP-Dissect baseline is in baselines.smk, tau sweeps in sweep.smk, stage ablations in stage_ablation.smk.


# fetched where the internet is (the login node); `snakemake prefetch` fetches it ahead as well
localrules:
    ground_truth_list,


rule ground_truth_list:
    """A model's published class list (models.*.ground_truth: url + sha256): fetched once, checksum checked,
    cleaned (clean: places365 as CLIP-Dissect does), one class per line."""
    output:
        txt=paths.GROUND_TRUTH_LIST,
    log:
        paths.log("ground_truth/{model}", "ground_truth_list"),
    benchmark:
        paths.benchmark("ground_truth/{model}", "ground_truth_list")
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(10),
    params:
        spec=lambda wildcards: config["models"][wildcards.model]["ground_truth"],
        # resources/ground_truth/, where prefetch puts the checked download ({sha256}.txt)
        downloads=lambda wildcards, output: os.path.dirname(os.path.dirname(output.txt)),
    script:
        "../scripts/ground_truth_list.py"


rule final_layer_metrics:
    """CLIP cos, mpnet cos and top-1 accuracy of every method's labels of a classifier layer against the
    ground-truth class names, under CLIP-Dissect's and WWW's protocols."""
    input:
        unpack(final_layer_inputs),
    output:
        json=paths.FINAL_LAYER_METRICS,
    log:
        paths.log(paths.RUN, "final_layer_metrics"),
    benchmark:
        paths.benchmark(paths.RUN, "final_layer_metrics")
    wildcard_constraints:
        model=never_matching(GROUND_TRUTH_MODELS),
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=2,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(30),
    params:
        clip_model=final_layer_clip_model(),
        mpnet_model=verbatim(config["evaluate"]["mpnet_model"]),  # a sentence model id, or an embedder spec
        methods=HYPOTHESIZE_METHODS,
        device=config["device"],
    script:
        "../scripts/final_layer_metrics.py"


rule final_layer_variants:
    """The final-layer columns of Tables 4 and 5: SIEVE's verified labels of every swept tau and every
    stage-ablation variant against the ground-truth class names, under both protocols."""
    input:
        unpack(final_layer_variant_inputs),
    output:
        json=paths.FINAL_LAYER_VARIANTS,
    log:
        paths.log(paths.RUN, "final_layer_variants"),
    benchmark:
        paths.benchmark(paths.RUN, "final_layer_variants")
    wildcard_constraints:
        model=never_matching(GROUND_TRUTH_MODELS),
    conda:
        "../../envs/gpu.yaml"
    threads: 2
    resources:
        gpu=1,
        cpus_per_gpu=2,
        mem_mb=per_attempt(8000),
        runtime=per_attempt(30),
    params:
        clip_model=final_layer_clip_model(),
        mpnet_model=verbatim(config["evaluate"]["mpnet_model"]),
        device=config["device"],
    script:
        "../scripts/final_layer_variants.py"


rule ablate_neurons:
    """Zero each neuron evaluate.ablate_neurons names for this model entry (or, with best_verified, the run's
    best SIEVE-verified ones); per-class accuracy drop on the labelled probe set."""
    input:
        ground_truth=ground_truth_file,
        checkpoint=trained_checkpoint,
        pictures=trained_probe_pictures,
        verified=ablation_verified,
    output:
        ablation=report(
            directory(paths.NEURON_ABLATION),
            patterns=["{neuron}.png"],
            caption="../report/ablation.rst",
            category="Evaluate",
            subcategory="{model} / {probe}",
        ),
    log:
        paths.log(paths.MODEL_PROBE, "ablate_neurons"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "ablate_neurons")
    conda:
        "../../envs/gpu.yaml"
    threads: 4
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=per_attempt(16000),
        runtime=per_attempt(120),
        batch_size=model_batch_size,
        workers=config["num_workers"],
    params:
        model=probe_model_spec,
        probe=probe_spec,
        neurons=lambda wildcards: ABLATE_NEURONS[wildcards.model],
        device=config["device"],
    script:
        "../scripts/ablate_neurons.py"
