# The final report: one static, offline page over every stage's results (sieve.report): index.html (data
# inline, rendered by assets/report.js), assets/ (report.js, report.css, web-sized JPEG thumbnails,
# histograms), comparison.csv (one row per model / probe / concept set / method) and ar_distribution.png.
# Its input (get_report_inputs, common.smk) is every other final output, so it runs last.


rule report:
    """Build the HTML report from every stage's results; files of stages that did not run are left out."""
    input:
        get_report_inputs,
    output:
        html=paths.REPORT_HTML,
        assets=directory(paths.REPORT_ASSETS),
        comparison=report(
            paths.REPORT_COMPARISON,
            caption="../report/comparison.rst",
            category="Report",
        ),
        ar_png=report(
            paths.REPORT_AR_PNG,
            caption="../report/ar_distribution.rst",
            category="Report",
        ),
    log:
        paths.log(paths.REPORT, "report"),
    benchmark:
        paths.benchmark(paths.REPORT, "report")
    group:
        "report"
    conda:
        "../../envs/cpu.yaml"
    threads: 1
    resources:
        mem_mb=per_attempt(4000),
        runtime=per_attempt(30),
    params:
        models=MODELS,
        probes=PROBES,
        concept_sets=CONCEPT_SETS,
        title=verbatim(config["report"]["title"]),
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
    script:
        "../scripts/build_report.py"
