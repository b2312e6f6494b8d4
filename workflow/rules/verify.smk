# Verify: generate images of every hypothesised concept (sharded, content-addressed), measure the neurons on
# them, and keep the hypotheses whose Activation Rate reaches the initial mean.
#
#   results/generate/requests.json           every distinct prompt of every hypotheses folder, with its shard
#   results/generate/shards/{shard}.json     one GPU job per shard: what it generated/reused, cache paths
#   results/generate/cache/...               content-addressed images (thumbnails) and activations
#   results/{model}/{probe}/{concept_set}/verify/ar.csv, summary.json, generated.json
#   results/{model}/{probe}/{concept_set}/neuron_concepts.csv


from snakemake.exceptions import WorkflowError

from sieve.backends import BackendError
from sieve.backends.generators import check_generator_source

GENERATE_CACHE = "results/generate/cache"

# A generator folder that does not exist stops the run when the workflow is parsed, with one message.
try:
    check_generator_source(config["generator"])
except BackendError as exc:
    raise WorkflowError(str(exc)) from None


rule generation_requests:
    """Gather every distinct concept of every hypotheses folder into one request list, split into shards."""
    input:
        hypotheses=get_hypotheses_dirs,
    output:
        requests="results/generate/requests.json",
    log:
        "logs/generate/generation_requests.log",
    benchmark:
        "benchmarks/generate/generation_requests.tsv"
    params:
        prompt=config["generator"]["prompt"],
        shards=config["generator"]["shards"],
        generator=config["generator"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/generation_requests.py"


rule generate_shard:
    """One GPU job per shard: load the pipeline and the target models once, generate the shard's missing images
    in batches and record every model's activations on them, on the device."""
    input:
        requests=rules.generation_requests.output.requests,
    output:
        manifest="results/generate/shards/{shard}.json",
    log:
        "logs/generate/generate_shard_{shard}.log",
    benchmark:
        "benchmarks/generate/generate_shard_{shard}.tsv"
    params:
        generator=config["generator"],
        models=config["models"],
        device=config["device"],
        cache=GENERATE_CACHE,
    threads: 4
    resources:
        mem_mb=32000,
        runtime=360,
    conda:
        "../../envs/gpu.yaml"
    script:
        "../scripts/generate_shard.py"


rule activation_rate:
    """Activation Rate of every hypothesis, the filter at the initial mean AR, and the per-neuron result."""
    input:
        hypotheses="results/{model}/{probe}/{concept_set}/hypotheses",
        select="results/{model}/{probe}/select/summary.json",
        manifests=get_shard_manifests,
    output:
        ar="results/{model}/{probe}/{concept_set}/verify/ar.csv",
        summary="results/{model}/{probe}/{concept_set}/verify/summary.json",
        generated="results/{model}/{probe}/{concept_set}/verify/generated.json",
        neuron_concepts=report(
            "results/{model}/{probe}/{concept_set}/neuron_concepts.csv",
            caption="../report/neuron_concepts.rst",
            category="Verify",
            subcategory="{model} / {probe} / {concept_set}",
        ),
    log:
        "logs/{model}/{probe}/{concept_set}/activation_rate.log",
    benchmark:
        "benchmarks/{model}/{probe}/{concept_set}/activation_rate.tsv"
    params:
        enabled=config["verify"]["enabled"],
        method="sieve",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/activation_rate.py"


STAGE_OUTPUTS.append("results/{model}/{probe}/{concept_set}/neuron_concepts.csv")
STAGE_OUTPUTS.append("results/{model}/{probe}/{concept_set}/verify/summary.json")
