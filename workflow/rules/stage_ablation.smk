# Stage ablations (`evaluate: {stage_ablations: true}`, or the target `snakemake stage_ablations`): the run
# again without one stage each, below results/stage_ablations/:
#   no_select (select.enabled false), no_cluster (hypothesize.cluster false), no_verify (verify.enabled false),
#   none (all three off: the paper's row with none of the stages); "full" is the run itself. Each variant reruns only the stages its switch changes, with the run's own rules
# derived for other files, and reuses the probe, the activations, the crops of the run and every image
# already generated (the content-addressed cache is shared: the variants' generation plan audits it like the
# run's own and runs after the run's shards). One table per run compares them.


# no Select: every neuron that is not dead goes on to Hypothesize.
use rule select_neurons as stage_ablation_select_neurons with:
    output:
        summary=paths.select_summary(paths.STAGE_ABLATION_NO_SELECT),
        neurons=directory(paths.select_neurons(paths.STAGE_ABLATION_NO_SELECT)),
    log:
        paths.log(paths.STAGE_ABLATION_NO_SELECT, "select_neurons"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_NO_SELECT, "select_neurons")
    params:
        enabled=False,


# no Select: crops and embeddings of every neuron's top images.
use rule embed_crops as stage_ablation_embed_crops with:
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.stage_ablation_select_neurons.output.neurons,
    output:
        h5=paths.crops(paths.STAGE_ABLATION_NO_SELECT),
    log:
        paths.log(paths.STAGE_ABLATION_NO_SELECT, "embed_crops"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_NO_SELECT, "embed_crops")


# no Select: the usual clusters over all neurons; no Cluster: one cluster per neuron; none: one cluster per
# neuron, over all neurons.
use rule cluster_crops as stage_ablation_cluster_crops with:
    input:
        h5=stage_ablation_crops,
    output:
        clusters=directory(paths.clusters(paths.STAGE_ABLATION_MODEL_PROBE)),
    log:
        paths.log(paths.STAGE_ABLATION_MODEL_PROBE, "cluster_crops"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_MODEL_PROBE, "cluster_crops")
    params:
        cluster=stage_ablation_cluster_switch,


# Top concepts per cluster of a variant.
use rule hypothesize as stage_ablation_hypothesize with:
    input:
        clusters=rules.stage_ablation_cluster_crops.output.clusters,
        crops=stage_ablation_crops,
        concepts=rules.prepare_concepts.output.json,
        embeddings=rules.embed_concepts.output.h5,
    output:
        hypotheses=directory(paths.hypotheses(paths.STAGE_ABLATION_VARIANT_RUN)),
    log:
        paths.log(paths.STAGE_ABLATION_VARIANT_RUN, "hypothesize"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_VARIANT_RUN, "hypothesize")


# Concepts the variants hypothesise, split into shards (what the run generated is reused).
use rule generation_requests as stage_ablation_generation_requests with:
    input:
        hypotheses=stage_ablation_hypotheses_dirs,
        concepts=get_control_concept_sets,
    output:
        requests=paths.generation_requests(paths.STAGE_ABLATION_GENERATE),
    log:
        paths.log(paths.STAGE_ABLATION_GENERATE, "generation_requests"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_GENERATE, "generation_requests")
    params:
        audit=generation_audit(paths.generation_plan(paths.STAGE_ABLATION_GENERATE)),


localrules:
    stage_ablation_generation_plan,


# The variants' plan, on the shared cache, once the run's own shards are done (what they generated is reused).
# Declared in full: `use rule` does not carry `checkpoint` over to the derived rule (Snakemake 9.27).
checkpoint stage_ablation_generation_plan:
    """The generation plan of the variants' concepts (see generation_plan), after the run's own shards."""
    input:
        requests=rules.stage_ablation_generation_requests.output.requests,
        after=get_shard_manifests,
    output:
        plan=directory(paths.generation_plan(paths.STAGE_ABLATION_GENERATE)),
    log:
        paths.log(paths.STAGE_ABLATION_GENERATE, "generation_plan"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_GENERATE, "generation_plan")
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
        audit=generation_audit(paths.generation_plan(paths.STAGE_ABLATION_GENERATE)),
    script:
        "../scripts/generation_plan.py"


# Generate what the variants' plan found missing and measure every model on it.
use rule generate_shard as stage_ablation_generate_shard with:
    input:
        requests=rules.stage_ablation_generation_requests.output.requests,
        plan=rules.stage_ablation_generation_plan.output.plan,
        leader=job_leader(
            checkpoints.stage_ablation_generation_plan,
            paths.generation_shard(paths.STAGE_ABLATION_GENERATE),
        ),
    output:
        manifest=paths.generation_shard(paths.STAGE_ABLATION_GENERATE),
    log:
        paths.log(paths.STAGE_ABLATION_GENERATE, "generate_shard_{shard}"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_GENERATE, "generate_shard_{shard}")


# Activation Rate and the filter of a variant (no Verify keeps every hypothesis).
use rule activation_rate as stage_ablation_activation_rate with:
    input:
        hypotheses=stage_ablation_hypotheses,
        select=stage_ablation_select,
        manifests=stage_ablation_manifests,
        concepts=rules.prepare_concepts.output.json,
    output:
        **paths.verify_files(paths.STAGE_ABLATION_VARIANT_RUN),
    log:
        paths.log(paths.STAGE_ABLATION_VARIANT_RUN, "activation_rate"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_VARIANT_RUN, "activation_rate")
    params:
        enabled=stage_ablation_verify_switch,


rule stage_ablation_table:
    """The stage ablation table: all three / no Select / no Cluster / no Verify / none of the three, mean AR and
    (synthetic) recovery."""
    input:
        unpack(stage_ablation_table_inputs),
    output:
        json=paths.STAGE_ABLATION_TABLE,
    log:
        paths.log(paths.STAGE_ABLATION_RUN, "ablation_table"),
    benchmark:
        paths.benchmark(paths.STAGE_ABLATION_RUN, "ablation_table")
    group:
        "tables"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(2000),
        runtime=per_attempt(10),
    params:
        spec=stage_ablation_world_spec,
        synthetic=model_is_synthetic,
        packaged_world=model_packaged_world,
    script:
        "../scripts/ablation_table.py"


rule stage_ablations:
    """`snakemake stage_ablations`: the stage ablation tables of every model / probe / concept set."""
    input:
        get_stage_ablation_outputs(),
