# Prefetch, for compute nodes without internet: `snakemake prefetch --cores 1` on a login node downloads every
# model weight, CLIP, the diffusion pipeline, concept lists and downloadable probe sets the config names into
# the caches (TORCH_HOME, HF_HOME, resources/concepts); jobs then run with `offline: true`.


rule prefetch:
    """Download everything the config needs from the network (a local rule: it runs where snakemake runs,
    also under profiles/slurm, and ignores `offline:`). Writes what it fetched and the cache folders."""
    output:
        manifest=paths.PREFETCH_MANIFEST,
    log:
        paths.log("", "prefetch"),
    benchmark:
        paths.benchmark("", "prefetch")
    localrule: True
    conda:
        "../../envs/gpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(8000),
        runtime=per_attempt(240),
    params:
        models=config["models"],
        probes=config["probes"],
        embedder=config["embedder"],
        generator=config["generator"],
        concept_sets=config["concept_sets"],
        evaluate=config["evaluate"],
        resources=paths.CONCEPT_DOWNLOADS,
    script:
        "../scripts/prefetch.py"
