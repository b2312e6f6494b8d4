rule probe_activations:
    """Run the probe set through the model once, streaming: pooled activations of every image and the
    spatial maps of each neuron's top images."""
    input:
        world=probe_world_specs,
    output:
        h5="results/{model}/{probe}/activations.h5",
    log:
        "logs/{model}/{probe}/probe_activations.log",
    benchmark:
        "benchmarks/{model}/{probe}/probe_activations.tsv"
    params:
        model=probe_model_spec,
        probe=probe_spec,
        top_n=config["select"]["top_n"],
        device=config["device"],
        max_bad_share=config["max_bad_image_share"],
    threads: 4
    resources:
        mem_mb=16000,
        runtime=240,
        batch_size=model_batch_size,
        workers=config["num_workers"],
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/probe_activations.py"
