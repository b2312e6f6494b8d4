"""The path scheme of sieve's results, logs and benchmarks, defined once for the rules and the report.

Every pattern is a plain format string over Snakemake's wildcards: ``{model}``, ``{probe}`` and ``{concept_set}``
are config names, ``{shard}`` a generation shard, ``{tau}`` a swept tau, ``{variant}`` a stage ablation.
Concepts are never part of a path: they are identified by a stable hash inside the files.

A *root* is a folder below ``results/`` (and mirrored below ``logs/`` and ``benchmarks/``) that holds one
stage's files. There are two kinds, and the file functions below take either the run's own root or a
variant's (a baseline method, a tau sweep, a stage ablation), so that a variant has the same layout:

- a model/probe root (:data:`MODEL_PROBE`): Select, crops, clusters, grids;
- a run root (:data:`RUN`, one concept set): hypotheses, Verify, truth and the evaluation tables.

This module imports nothing heavy: the Snakefile and the report both read it.
"""

from __future__ import annotations

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "benchmarks"

SWEEPS = "sweeps"  # results/sweeps/: a tau sweep's own Select / Hypothesize and one run per tau
STAGE_ABLATIONS = "stage_ablations"  # results/stage_ablations/: no Select / no Cluster / no Verify
GENERATE = "generate"  # results/generate/: generation requests, shards and the content-addressed cache
CONCEPTS = "concepts/{concept_set}"  # cleaned concept sets and their text embeddings
REPORT = "report"
TRAINED_WORLD = "trained_world"  # results/trained_world/: the trained world's checkpoints, classes, pictures

# ------------------------------------------------------------------------------------------------------- roots
MODEL_PROBE = "{model}/{probe}"
RUN = "{model}/{probe}/{concept_set}"
# Hypotheses and Verify of each method, below a run root ("" = the run root itself).
METHOD_DIRS = {"sieve": "", "clip_dissect": "baselines/clip_dissect"}
SWEEP_MODEL_PROBE = f"{SWEEPS}/{MODEL_PROBE}"
SWEEP_RUN = f"{SWEEPS}/{RUN}"
SWEEP_TAU_RUN = f"{SWEEP_RUN}/tau_{{tau}}"
STAGE_ABLATION_RUN = f"{STAGE_ABLATIONS}/{RUN}"  # the stage ablation table of a run
STAGE_ABLATION_MODEL_PROBE = f"{STAGE_ABLATIONS}/{MODEL_PROBE}/{{variant}}"
STAGE_ABLATION_VARIANT_RUN = f"{STAGE_ABLATION_RUN}/{{variant}}"
STAGE_ABLATION_GENERATE = f"{STAGE_ABLATIONS}/{GENERATE}"


def method_root(method: str, run: str = RUN) -> str:
    """The run root of a hypothesis method's files (``sieve`` is the run root, a baseline a folder in it)."""
    sub = METHOD_DIRS[method]
    return f"{run}/{sub}" if sub else run


def stage_ablation_model_probe(variant: str) -> str:
    """The model/probe root of one stage ablation variant (``no_select``, ``no_cluster``)."""
    return STAGE_ABLATION_MODEL_PROBE.replace("{variant}", variant)


def stage_ablation_run(variant: str) -> str:
    """The run root of one stage ablation variant (``no_select``, ``no_cluster``, ``no_verify``)."""
    return STAGE_ABLATION_VARIANT_RUN.replace("{variant}", variant)


STAGE_ABLATION_NO_SELECT = stage_ablation_model_probe(
    "no_select"
)  # the one variant with its own Select and crops


# ---------------------------------------------------------------------- names of files and folders below a root
# The one place each name is spelled: the rules reach them through the functions and patterns below, the report
# joins them to the folders it reads.
SELECT_SUMMARY_FILE = "select/summary.json"
SELECT_NEURONS_DIR = "select/neurons"
ACTIVATIONS_FILE = "activations.h5"
CROPS_FILE = "crops/crops.h5"
CLUSTERS_DIR = "clusters"
HYPOTHESES_DIR = "hypotheses"
AR_FILE = "verify/ar.csv"
VERIFY_SUMMARY_FILE = "verify/summary.json"
GENERATED_FILE = "verify/generated.json"
NEURON_CONCEPTS_FILE = "neuron_concepts.csv"
RATIO_HISTOGRAM_FILE = "select/ratio_histogram.png"
GRIDS_DIR = "grids"
TRUTH_FILE = "truth.csv"
TRUTH_SUMMARY_FILE = "truth_summary.json"
NEURON_ABLATION_DIR = "ablation"
CONCEPTS_FILE = "concepts.json"


def result(root: str, name: str) -> str:
    """``results/{root}/{name}``."""
    return f"{RESULTS}/{root}/{name}" if root else f"{RESULTS}/{name}"


def log(root: str, name: str) -> str:
    """The log of a job writing below ``results/{root}``: ``logs/{root}/{name}.log``."""
    return f"{LOGS}/{root}/{name}.log" if root else f"{LOGS}/{name}.log"


def benchmark(root: str, name: str) -> str:
    """The benchmark of a job writing below ``results/{root}``: ``benchmarks/{root}/{name}.tsv``."""
    return f"{BENCHMARKS}/{root}/{name}.tsv" if root else f"{BENCHMARKS}/{name}.tsv"


# ------------------------------------------------------------------------------- files below a model/probe root
def select_summary(root: str = MODEL_PROBE) -> str:
    return result(root, SELECT_SUMMARY_FILE)


def select_neurons(root: str = MODEL_PROBE) -> str:
    return result(root, SELECT_NEURONS_DIR)


def crops(root: str = MODEL_PROBE) -> str:
    return result(root, CROPS_FILE)


def clusters(root: str = MODEL_PROBE) -> str:
    return result(root, CLUSTERS_DIR)


# ------------------------------------------------------------------------------------ files below a run root
def hypotheses(root: str = RUN) -> str:
    return result(root, HYPOTHESES_DIR)


def verify_files(root: str = RUN) -> dict[str, str]:
    """What Verify writes for one hypotheses folder: named as the outputs of the activation_rate rule."""
    return {
        "ar": result(root, AR_FILE),
        "summary": result(root, VERIFY_SUMMARY_FILE),
        "generated": result(root, GENERATED_FILE),
        "neuron_concepts": result(root, NEURON_CONCEPTS_FILE),
    }


def generation_requests(root: str = GENERATE) -> str:
    return result(root, "requests.json")


def generation_shard(root: str = GENERATE) -> str:
    return result(root, "shards/{shard}.json")


def generation_plan(root: str = GENERATE) -> str:
    """The generation plan's folder: ``plan.json`` and the manifests of the shards that need no job."""
    return result(root, "plan")


# ------------------------------------------------------------------------------------------- the run's files
ACTIVATIONS = result(MODEL_PROBE, ACTIVATIONS_FILE)
SELECT_SUMMARY = select_summary()
SELECT_NEURONS = select_neurons()
RATIO_HISTOGRAM = result(MODEL_PROBE, RATIO_HISTOGRAM_FILE)
CROPS = crops()
CLUSTERS = clusters()
GRIDS = result(MODEL_PROBE, GRIDS_DIR)
CONCEPTS_JSON = result(CONCEPTS, CONCEPTS_FILE)
CONCEPT_EMBEDDINGS = result(CONCEPTS, "embeddings.h5")
HYPOTHESES = hypotheses()
VERIFY = verify_files()
GENERATION_REQUESTS = generation_requests()
GENERATION_SHARD = generation_shard()
GENERATION_PLAN = generation_plan()
GENERATE_CACHE = result(
    GENERATE, "cache"
)  # content-addressed images and activations, shared by every variant
TRUTH_CSV = result(RUN, TRUTH_FILE)
TRUTH_SUMMARY = result(RUN, TRUTH_SUMMARY_FILE)

# Evaluation: the CLIP-Dissect baseline, final-layer metrics, neuron ablation, tau sweeps, stage ablations.
CLIP_DISSECT = method_root("clip_dissect")
CLIP_DISSECT_IMAGE_EMBEDDINGS = result(MODEL_PROBE, "clip_dissect/image_embeddings.h5")
CLIP_DISSECT_CONCEPT_EMBEDDINGS = result(CONCEPTS, "clip_dissect/embeddings.h5")  # raw concept text
CLIP_DISSECT_LABELS = result(CLIP_DISSECT, "labels.csv")
FINAL_LAYER_METRICS = result(RUN, "final_layer_metrics.json")
# the final-layer columns of every tau of a sweep and every stage-ablation variant (Tables 4 and 5)
FINAL_LAYER_VARIANTS = result(RUN, "final_layer_variants.json")
NEURON_ABLATION = result(
    MODEL_PROBE, NEURON_ABLATION_DIR
)  # evaluate.ablate_neurons: {neuron}.json, {neuron}.png
SWEEP_TAU_SELECT = result(SWEEP_TAU_RUN, "select_summary.json")
SWEEP_TABLE = result(RUN, "sweeps/tau.json")
STAGE_ABLATION_TABLE = result(STAGE_ABLATION_RUN, "ablations.json")

# The trained world (sieve/trained, rules/train.smk): one checkpoint and training record per model of its spec
# ({trained}), the class names (CLIP-Dissect's imagenet_labels.txt format) and the held-out pictures as an image
# folder (one folder per class index, the probe set of the trained models).
TRAINED_CHECKPOINT = result(TRAINED_WORLD, "{trained}/model.pt")
TRAINED_METRICS = result(TRAINED_WORLD, "{trained}/training.json")  # held-out accuracy, recall, time
TRAINED_CLASS_NAMES = result(TRAINED_WORLD, "class_names.txt")
TRAINED_PICTURES = result(TRAINED_WORLD, "pictures")

REPORT_HTML = result(REPORT, "index.html")
REPORT_ASSETS = result(REPORT, "assets")
REPORT_COMPARISON = result(REPORT, "comparison.csv")
REPORT_AR_PNG = result(REPORT, "ar_distribution.png")

# Outside results/: what `snakemake prefetch` fetched, and downloaded concept lists.
PREFETCH_MANIFEST = "resources/prefetch.json"
CONCEPT_DOWNLOADS = "resources/concepts"
GROUND_TRUTH_DOWNLOADS = "resources/ground_truth"  # published class lists, as fetched ({sha256}.txt)
GROUND_TRUTH_LIST = f"{GROUND_TRUTH_DOWNLOADS}/{{model}}/classes.txt"  # a model's class strings, cleaned
