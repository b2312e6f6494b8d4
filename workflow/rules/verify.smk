# Verify: generate images of every hypothesised concept (sharded, content-addressed), measure the neurons on
# them, and keep the hypotheses whose Activation Rate reaches the initial mean. One request list gathers the
# concepts of every hypotheses folder (get_hypotheses_dirs, common.smk); the generation plan (a checkpoint,
# run as a local CPU rule) audits the shared cache and sends only the shards with anything to generate or
# measure to a GPU job (generate_shard); Activation Rate reads the other shards' manifests from the plan
# (get_shard_manifests).
#
# Guarantees (sieve.verify): every cache file is written atomically and its SHA-256 recorded beside it, so a
# killed job leaves no file that passes for complete; when the workflow is parsed (dry runs too, read only) the
# plan's entries are checked against their checksums, and a plain `snakemake` regenerates whatever was deleted,
# truncated or altered, and nothing else (no GPU job for a shard whose entries are intact).


rule generation_requests:
    """Gather every distinct concept of every hypotheses folder, and every concept set's control pool, into one
    request list, split into shards."""
    input:
        hypotheses=get_hypotheses_dirs,
        concepts=get_control_concept_sets,
    output:
        requests=paths.GENERATION_REQUESTS,
    log:
        paths.log(paths.GENERATE, "generation_requests"),
    benchmark:
        paths.benchmark(paths.GENERATE, "generation_requests")
    group:
        "requests"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        prompt=verbatim(config["generator"]["prompt"]),
        shards=config["generator"]["shards"],
        generator=generator_result_spec(),
        controls=config["verify"]["controls"],
        control_seed=config["verify"]["control_seed"],
        neutral_prompts=verbatim(config["verify"]["neutral_prompts"]),
        # Not read by the script: a damaged or removed cache entry changes it, so the requests, the plan after
        # them and the shards with damage rerun (the plan, behind a checkpoint, is not checked on its own).
        audit=generation_audit(paths.GENERATION_PLAN),
    script:
        "../scripts/generation_requests.py"


localrules:
    generation_plan,


checkpoint generation_plan:
    """On a CPU: which shards have anything to generate or measure (audited against the cache's checksums); the
    manifests of the others, which need no GPU job. A local rule: it runs where snakemake runs (which audits the
    same cache when it parses the workflow), so deciding costs no queue wait."""
    input:
        requests=rules.generation_requests.output.requests,
    output:
        plan=directory(paths.GENERATION_PLAN),
    log:
        paths.log(paths.GENERATE, "generation_plan"),
    benchmark:
        paths.benchmark(paths.GENERATE, "generation_plan")
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(20),
    params:
        generator=generator_result_spec(),
        models=config["models"],
        device=config["device"],
        cache=paths.GENERATE_CACHE,
        audit=generation_audit(paths.GENERATION_PLAN),
    script:
        "../scripts/generation_plan.py"


rule generate_shard:
    """One GPU job per shard that the plan found work for: load the pipeline and the target models once,
    generate the shard's missing images in batches and record every model's activations on them, on the
    device. With generator.shards_per_job > 1, the first shard of each job generates the job's shards and the
    others wait for it, then find everything cached."""
    input:
        requests=rules.generation_requests.output.requests,
        plan=rules.generation_plan.output.plan,
        leader=job_leader(checkpoints.generation_plan, paths.GENERATION_SHARD),
    output:
        manifest=paths.GENERATION_SHARD,
    log:
        paths.log(paths.GENERATE, "generate_shard_{shard}"),
    benchmark:
        paths.benchmark(paths.GENERATE, "generate_shard_{shard}")
    conda:
        "../../envs/gpu.yaml"
    threads: 4
    resources:
        gpu=1,
        cpus_per_gpu=4,
        mem_mb=per_attempt(32000),
        runtime=per_attempt(360),
        batch_size=generator_speed("batch_size"),
        channels_last=generator_speed("channels_last"),
        compile=generator_speed("compile"),
        compile_backend=generator_speed("compile_backend"),
        compile_mode=generator_speed("compile_mode"),
    params:
        generator=generator_result_spec(),
        models=config["models"],
        device=config["device"],
        cache=paths.GENERATE_CACHE,
    script:
        "../scripts/generate_shard.py"


rule activation_rate:
    """Activation Rate of every hypothesis, its scores against the concept set's control pool, the filters (the
    paper's: AR >= the initial mean AR; specificity: that and the control rate capped), and the per-neuron
    result. The filter settings are params of this rule only: changing them reruns this step (and what reads
    its tables), never generation."""
    input:
        hypotheses=rules.hypothesize.output.hypotheses,
        select=rules.select_neurons.output.summary,
        manifests=get_shard_manifests,
        concepts=rules.prepare_concepts.output.json,
    output:
        ar=paths.VERIFY["ar"],
        summary=paths.VERIFY["summary"],
        generated=paths.VERIFY["generated"],
        neuron_concepts=report(
            paths.VERIFY["neuron_concepts"],
            caption="../report/neuron_concepts.rst",
            category="Verify",
            subcategory="{model} / {probe} / {concept_set}",
        ),
    log:
        paths.log(paths.RUN, "activation_rate"),
    benchmark:
        paths.benchmark(paths.RUN, "activation_rate")
    group:
        "verify"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(20),
    params:
        enabled=config["verify"]["enabled"],
        method="sieve",
        prompt=verbatim(config["generator"]["prompt"]),
        controls=config["verify"]["controls"],
        control_seed=config["verify"]["control_seed"],
        neutral_prompts=verbatim(config["verify"]["neutral_prompts"]),
        filter=config["verify"]["filter"],
        max_control_rate=config["verify"]["max_control_rate"],
    script:
        "../scripts/activation_rate.py"
