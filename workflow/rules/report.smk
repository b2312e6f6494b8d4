# The final report: one static, offline page over every stage's results (sieve.report).
#   results/report/index.html            the page (data inline, rendered by assets/report.js)
#   results/report/assets/               report.js, report.css, web-sized JPEG thumbnails, histograms
#   results/report/comparison.csv        one row per model / probe / concept set / method (also in the page)
#   results/report/ar_distribution.png   AR histograms with the initial and kept means
# It reads results/ and benchmarks/ by the path scheme of the Snakefile; its input (get_report_inputs, in
# common.smk) is every other final output, so it runs last.


rule report:
    """Build the HTML report from every stage's results; files of stages that did not run are left out."""
    input:
        get_report_inputs,
    output:
        html="results/report/index.html",
        assets=directory("results/report/assets"),
        comparison=report(
            "results/report/comparison.csv",
            caption="../report/comparison.rst",
            category="Report",
        ),
        ar_png=report(
            "results/report/ar_distribution.png",
            caption="../report/ar_distribution.rst",
            category="Report",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    params:
        models=MODELS,
        probes=PROBES,
        concept_sets=CONCEPT_SETS,
        title=config["report"]["title"],
        generated_per_concept=config["report"]["generated_per_concept"],
        settings={
            "models": config["models"],
            "probes": config["probes"],
            "concept_sets": config["concept_sets"],
            "select": config["select"],
            "embedder": config["embedder"],
            "hypothesize": config["hypothesize"],
            "generator": config["generator"],
            "verify": config["verify"],
        },
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/cpu.yaml"
    script:
        "../scripts/build_report.py"


STAGE_OUTPUTS.append("results/report/index.html")
