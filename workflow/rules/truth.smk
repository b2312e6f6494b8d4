# The planted truth of synthetic models (sieve/evaluate/truth.py) beside what sieve found.


rule truth:
    """The planted truth of a synthetic model beside what sieve found: selected, verified, recovered."""
    input:
        select=rules.select_neurons.output.summary,
        ar=rules.activation_rate.output.ar,
        verify_summary=rules.activation_rate.output.summary,
        neuron_concepts=rules.activation_rate.output.neuron_concepts,
        baselines=get_truth_baselines,
        world=world_spec_input,
    output:
        csv=paths.TRUTH_CSV,
        summary=paths.TRUTH_SUMMARY,
    log:
        paths.log(paths.RUN, "truth"),
    benchmark:
        paths.benchmark(paths.RUN, "truth")
    group:
        "tables"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        spec=world_spec,
        packaged_world=model_packaged_world,
    script:
        "../scripts/truth.py"
