rule select_neurons:
    """Select: ratio = p99 / median per neuron; neurons whose ratio exceeds tau are kept."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        summary=paths.SELECT_SUMMARY,
        neurons=directory(paths.SELECT_NEURONS),
    log:
        paths.log(paths.MODEL_PROBE, "select_neurons"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "select_neurons")
    group:
        "select"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(20),
    params:
        tau=config["select"]["tau"],
        top_n=config["select"]["top_n"],
        enabled=config["select"]["enabled"],
        negative=config["select"]["negative"],
    script:
        "../scripts/select_neurons.py"


rule ratio_histogram:
    """Histogram of log10 selectivity ratios with tau marked."""
    input:
        summary=rules.select_neurons.output.summary,
    output:
        report(
            paths.RATIO_HISTOGRAM,
            caption="../report/ratio_histogram.rst",
            category="Select",
            subcategory="{model} / {probe}",
        ),
    log:
        paths.log(paths.MODEL_PROBE, "ratio_histogram"),
    benchmark:
        paths.benchmark(paths.MODEL_PROBE, "ratio_histogram")
    group:
        "select"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    script:
        "../scripts/ratio_histogram.py"
