# sieve: Select, Hypothesize, Verify. Explain what the neurons of a vision model do, and prove it.
#
# The path scheme (results/, and logs/ and benchmarks/ mirroring it) is defined once, in workflow/sieve/paths.py;
# the final targets and the input functions are in workflow/rules/common.smk.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/probe.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/hypothesize.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/truth.smk"
include: "workflow/rules/stage_ablation.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/sweep.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/prefetch.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


onsuccess:
    print_report_location()
