rule probe_activations:
    """Run the probe set through the model once, streaming: pooled activations of every image and the
    spatial maps of each neuron's top images."""
    input:
        world=probe_world_specs,
        checkpoint=trained_checkpoint,
        pictures=trained_probe_pictures,
    output:
        h5=paths.ACTIVATIONS,
    log:
        paths.log(paths.MODEL_PROBE, "probe_activations"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "probe_activations")
    conda:
        "../../envs/gpu.yaml"
    threads: config["probe"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["probe"]["threads"],
        mem_mb=per_attempt(16000),
        runtime=per_attempt(240),
        batch_size=model_batch_size,
        workers=config["num_workers"],
    params:
        model=probe_model_spec,
        probe=probe_spec,
        top_n=config["select"]["top_n"],
        device=config["device"],
        decode=config["probe"]["decode"],
        max_bad_share=config["max_bad_image_share"],
        packaged_world=probe_packaged_world,
    script:
        "../scripts/probe_activations.py"
