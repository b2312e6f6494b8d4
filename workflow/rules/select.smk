rule select_neurons:
    """Select: ratio = p99 / median per neuron; neurons whose ratio exceeds tau are kept."""
    input:
        h5=rules.probe_activations.output.h5,
    output:
        summary="results/{model}/{probe}/select/summary.json",
        neurons=directory("results/{model}/{probe}/select/neurons"),
    log:
        "logs/{model}/{probe}/select_neurons.log",
    benchmark:
        "benchmarks/{model}/{probe}/select_neurons.tsv"
    params:
        tau=config["select"]["tau"],
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


rule ratio_histogram:
    """Histogram of log10 selectivity ratios with tau marked."""
    input:
        summary=rules.select_neurons.output.summary,
    output:
        report(
            "results/{model}/{probe}/select/ratio_histogram.png",
            caption="../report/ratio_histogram.rst",
            category="Select",
            subcategory="{model} / {probe}",
        ),
    log:
        "logs/{model}/{probe}/ratio_histogram.log",
    benchmark:
        "benchmarks/{model}/{probe}/ratio_histogram.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/ratio_histogram.py"


STAGE_OUTPUTS.append("results/{model}/{probe}/select/ratio_histogram.png")
