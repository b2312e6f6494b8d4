# The trained world (sieve/trained, docs/trained-world.md): models of torchvision's own ResNet and
# VisionTransformer classes trained on pictures from the planted world's renderer, their class names and their
# held-out pictures. A config loads a checkpoint through `source: torchvision` exactly as a user's
# (`weights: results/trained_world/<name>/model.pt`); the probe and the neuron ablation of such a model wait for
# its training (trained_checkpoint, common.smk).
#
# Cached like any output: the params are the content of what changes the result (the world spec drawn from,
# the classes, the picture and training settings, the model's own settings; sieve.trained.params), never a
# path, so editing those retrains and nothing else does.


rule train_world_model:
    """Train one model of the trained world on CPU, deterministically (fixed seeds, deterministic algorithms):
    its checkpoint (a plain state_dict) and training.json (held-out accuracy, per-class recall, time). A model
    under the spec's accuracy floor (training.min_accuracy) stops the run with its figure."""
    output:
        checkpoint=paths.TRAINED_CHECKPOINT,
        metrics=paths.TRAINED_METRICS,
    log:
        paths.log(paths.TRAINED_WORLD, "{trained}/train"),
    benchmark:
        paths.benchmark(paths.TRAINED_WORLD, "{trained}/train")
    wildcard_constraints:
        trained=never_matching(TRAINED_MODELS),
    group:
        "trained_world"
    conda:
        "../../envs/cpu.yaml"
    # One thread: the same weights whatever --cores is (a float sum split over another number of threads
    # rounds differently), the two models of the default spec train side by side on two cores, and no thread
    # spins waiting for a sibling that a shared machine descheduled (13 s a step instead of 0.2, measured).
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        spec=TRAINED_SPEC,
        # Not read by the script: the content that changes the weights (Snakemake's params trigger).
        training=trained_training_params,
    script:
        "../scripts/train_world_model.py"


rule trained_class_names:
    """The trained world's class names, one line per class index (CLIP-Dissect's imagenet_labels.txt format,
    synonyms after commas): the `ground_truth:` of the trained models' final layers."""
    output:
        names=paths.TRAINED_CLASS_NAMES,
    log:
        paths.log(paths.TRAINED_WORLD, "class_names"),
    benchmark:
        paths.benchmark(paths.TRAINED_WORLD, "class_names")
    group:
        "trained_world"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        spec=TRAINED_SPEC,
        pictures=trained_picture_params(),
    script:
        "../scripts/trained_class_names.py"


rule trained_pictures:
    """The trained world's held-out pictures as an image folder, one folder per class index: the labelled
    probe set of the trained models (`kind: imagefolder`)."""
    output:
        pictures=directory(paths.TRAINED_PICTURES),
    log:
        paths.log(paths.TRAINED_WORLD, "pictures"),
    benchmark:
        paths.benchmark(paths.TRAINED_WORLD, "pictures")
    group:
        "trained_world"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        spec=TRAINED_SPEC,
        pictures=trained_picture_params(),
    script:
        "../scripts/trained_pictures.py"
