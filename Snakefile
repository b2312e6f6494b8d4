# sieve: Select, Hypothesize, Verify. Explain what the neurons of a vision model do, and prove it.
#
# Path scheme ({model}, {probe} and {concept_set} are config names; neurons are integer ids; concepts are
# never part of a path, they are identified by a stable hash inside the files):
#   results/{model}/{probe}/activations.h5                      probe activations (probe.smk)
#   results/{model}/{probe}/select/summary.json, neurons/       Select (select.smk)
#   results/{model}/{probe}/crops/crops.h5, clusters/, grids/   crops, CLIP embeddings, clusters (hypothesize.smk)
#   results/concepts/{concept_set}/concepts.json, embeddings.h5 cleaned concept sets and their text embeddings
#   results/{model}/{probe}/{concept_set}/hypotheses/           Hypothesize
#   results/generate/requests.json, shards/{shard}.json         sharded generation (verify.smk), cache under
#   results/generate/cache/                                     content-addressed images and activations
#   results/{model}/{probe}/{concept_set}/verify/ar.csv, summary.json, neuron_concepts.csv   Verify
#   results/{model}/{probe}/{concept_set}/baselines/clip_dissect/...                          baselines (evaluate.smk)
#   results/{model}/{probe}/{concept_set}/truth.csv, truth_summary.json  planted truth, synthetic models (truth.smk)
#   results/ablations/{model}/{probe}/{concept_set}/ablations.json      no Select / no Cluster / no Verify (truth.smk)
#   results/report/index.html                                   the report (report.smk)
# Logs mirror results under logs/, benchmarks under benchmarks/.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/hypothesize.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/truth.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/prefetch.smk"


rule all:
    input:
        get_final_output(),
    default_target: True


onsuccess:
    print_report_location()
