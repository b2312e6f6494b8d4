# Tau sweeps (`sweeps: {select.tau: [...]}`): one Select / Hypothesize at the smallest tau, below
# results/sweeps/ unless the run's own already covers it (SWEEP_REUSES_RUN, common.smk), then per tau the
# subset of neurons and hypotheses and Verify's AR on the shared generation cache, and one table per run.
# The sweep's Select and Hypothesize are the run's own rules, derived with other files.


# A tau sweep's Select at its smallest tau (from the run's activations: the probe never reruns).
use rule select_neurons as sweep_select with:
    output:
        summary=paths.select_summary(paths.SWEEP_MODEL_PROBE),
        neurons=directory(paths.select_neurons(paths.SWEEP_MODEL_PROBE)),
    log:
        paths.log(paths.SWEEP_MODEL_PROBE, "select_neurons"),
    benchmark:
        paths.benchmark(paths.SWEEP_MODEL_PROBE, "select_neurons")
    params:
        tau=SWEEP_TAUS[0] if SWEEP_TAUS else config["select"]["tau"],


# Crops and CLIP embeddings of the sweep's neurons.
use rule embed_crops as sweep_embed_crops with:
    input:
        h5=rules.probe_activations.output.h5,
        neurons=rules.sweep_select.output.neurons,
    output:
        h5=paths.crops(paths.SWEEP_MODEL_PROBE),
    log:
        paths.log(paths.SWEEP_MODEL_PROBE, "embed_crops"),
    benchmark:
        paths.benchmark(paths.SWEEP_MODEL_PROBE, "embed_crops")


# Ward clusters of the sweep's neurons.
use rule cluster_crops as sweep_cluster_crops with:
    input:
        h5=rules.sweep_embed_crops.output.h5,
    output:
        clusters=directory(paths.clusters(paths.SWEEP_MODEL_PROBE)),
    log:
        paths.log(paths.SWEEP_MODEL_PROBE, "cluster_crops"),
    benchmark:
        paths.benchmark(paths.SWEEP_MODEL_PROBE, "cluster_crops")


# Concept hypotheses of the sweep's neurons.
use rule hypothesize as sweep_hypothesize with:
    input:
        clusters=rules.sweep_cluster_crops.output.clusters,
        crops=rules.sweep_embed_crops.output.h5,
        concepts=rules.prepare_concepts.output.json,
        embeddings=rules.embed_concepts.output.h5,
    output:
        hypotheses=directory(paths.hypotheses(paths.SWEEP_RUN)),
    log:
        paths.log(paths.SWEEP_RUN, "hypothesize"),
    benchmark:
        paths.benchmark(paths.SWEEP_RUN, "hypothesize")


rule sweep_tau:
    """One tau of a sweep: its selection, the subset of hypotheses, and Verify's AR and filter on the shared
    generation cache."""
    input:
        select=sweep_select_summary,
        hypotheses=sweep_hypotheses,
        manifests=get_shard_manifests,
    output:
        **paths.verify_files(paths.SWEEP_TAU_RUN),
        select=paths.SWEEP_TAU_SELECT,
        hypotheses=directory(paths.hypotheses(paths.SWEEP_TAU_RUN)),
    log:
        paths.log(paths.SWEEP_RUN, "tau_{tau}"),
    benchmark:
        paths.benchmark(paths.SWEEP_RUN, "tau_{tau}")
    wildcard_constraints:
        tau=never_matching(SWEEP_TAU_NAMES),
    group:
        "verify"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(20),
    params:
        tau=sweep_tau_value,
        enabled=config["verify"]["enabled"],
    script:
        "../scripts/sweep_tau.py"


rule sweep_table:
    """The tau sweep as one table (selected neurons, mean AR initial / kept, verified share per tau)."""
    input:
        summaries=sweep_summaries,
    output:
        json=paths.SWEEP_TABLE,
    log:
        paths.log(paths.RUN, "sweep_table"),
    benchmark:
        paths.benchmark(paths.RUN, "sweep_table")
    group:
        "tables"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(1000),
        runtime=per_attempt(5),
    params:
        taus=list(SWEEP_TAU_NAMES.values()),
    script:
        "../scripts/sweep_table.py"
