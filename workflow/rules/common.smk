import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The sieve package lives next to the rules: importable here even when only the jobs' environments have it
# installed (envs/*.yaml install it with pip; a plain venv uses `pip install -e .`).
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)

from sieve.backends import activation_spec, embedding_spec  # noqa: E402  (light: no torch)
from sieve.config_checks import ConfigError, check_config  # noqa: E402
from sieve.io import stable_hash  # noqa: E402


validate(config, schema="../schemas/config.schema.yaml")
try:  # what the schema cannot say (finite numbers, local files, architecture names): before any job queues
    check_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

if config.get("offline"):
    for var in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"

MODELS = sorted(config["models"])
PROBES = sorted(config["probes"])
CONCEPT_SETS = sorted(config["concept_sets"])


wildcard_constraints:
    model="|".join(map(re.escape, MODELS)),
    probe="|".join(map(re.escape, PROBES)),
    concept_set="|".join(map(re.escape, CONCEPT_SETS)),
    shard=r"\d+",


def model_spec(wildcards):
    return config["models"][wildcards.model]


# Speed settings (batch sizes, DataLoader workers) change how fast a job runs, never what it writes. They reach
# the scripts as `resources:` rather than `params:`, so that tuning them for a GPU never reruns a finished probe
# or embedding (Snakemake's params trigger would).
def model_batch_size(wildcards):
    return int(model_spec(wildcards).get("batch_size", 64))


def embedder_result_spec():
    """The embedder spec as a param: without its batch size (a resource)."""
    return embedding_spec(config["embedder"])


def probe_model_spec(wildcards):
    """The model spec as the probe's param: without keys that change no activation (adding `ground_truth` for
    the final-layer metrics must not rerun the probe and everything after it)."""
    return activation_spec(model_spec(wildcards))


def probe_spec(wildcards):
    return config["probes"][wildcards.probe]


def concept_set_spec(wildcards):
    return config["concept_sets"][wildcards.concept_set]


# The packaged planted world (sieve.synthetic.world.resolve_spec_path reads the same file for "default").
DEFAULT_WORLD_SPEC = str(Path(workflow.basedir) / "workflow" / "sieve" / "synthetic" / "default.yaml")


def world_spec_file(spec):
    """The YAML file a synthetic entry reads (`spec:` of a model or probe set, `synthetic:` of a concept set):
    an input of the rules that use it, so that editing the world reruns them (a path alone is only a param)."""
    if spec in (None, "", "default"):
        return DEFAULT_WORLD_SPEC
    return os.path.expanduser(spec)


def concept_set_inputs(wildcards):
    """Local files a concept set is read from (hypothesize.smk), so that editing one reruns that set only."""
    spec = concept_set_spec(wildcards)
    if "path" in spec:
        return [os.path.expanduser(spec["path"])]
    if "synthetic" in spec:
        return [world_spec_file(spec["synthetic"])]
    return []


def probe_world_specs(wildcards):
    """World spec files of a synthetic model or probe set (probe.smk); none for real ones."""
    files = set()
    if model_spec(wildcards).get("source") == "synthetic":
        files.add(world_spec_file(model_spec(wildcards).get("spec")))
    if probe_spec(wildcards).get("kind") == "synthetic":
        files.add(world_spec_file(probe_spec(wildcards).get("spec")))
    return sorted(files)


def get_model_probe_outputs(pattern):
    """Expand a path pattern over every (model, probe) pair."""
    return expand(pattern, model=MODELS, probe=PROBES)


def get_all_outputs(pattern):
    """Expand a path pattern over every (model, probe, concept_set) triple."""
    return expand(pattern, model=MODELS, probe=PROBES, concept_set=CONCEPT_SETS)


def get_final_output():
    """What `snakemake` with no target builds: the report, which depends on every stage's results."""
    final = get_model_probe_outputs("results/{model}/{probe}/select/summary.json")
    final += get_stage_outputs()
    return final


# Stage files append to this list (path patterns over model/probe/concept_set) before `rule all` is parsed.
STAGE_OUTPUTS = []


def get_stage_outputs():
    outs = []
    for pattern in STAGE_OUTPUTS:
        outs += expand(pattern, model=MODELS, probe=PROBES, concept_set=CONCEPT_SETS)
    return outs


def get_report_inputs(wildcards):
    """Everything `rule all` builds except the report itself (report.smk). An input function, so it runs once
    every stage file has appended to STAGE_OUTPUTS: a stage added later is picked up by the report."""
    return sorted({f for f in get_final_output() if not f.startswith("results/report/")})


# Verify (verify.smk): hypotheses folders whose concepts are generated. Other stages (the baselines of
# evaluate.smk) append their own patterns over model/probe/concept_set; a concept named twice is generated once.
HYPOTHESES_DIRS = ["results/{model}/{probe}/{concept_set}/hypotheses"]


def get_hypotheses_dirs(wildcards):
    """Every hypotheses folder whose concepts the generation shards produce (evaluated after all includes)."""
    dirs = []
    for pattern in HYPOTHESES_DIRS:
        dirs += expand(pattern, model=MODELS, probe=PROBES, concept_set=CONCEPT_SETS)
    return dirs


def get_shard_manifests(wildcards):
    """The manifests of all generation shards."""
    return expand("results/generate/shards/{shard}.json", shard=range(config["generator"]["shards"]))


def get_truth_baselines(wildcards):
    """Verify files of the baselines (evaluate.smk) that the truth stage puts beside SIEVE in truth_summary.json."""
    methods = config["hypothesize"].get("methods") or [config["hypothesize"]["method"]]
    if "clip_dissect" not in methods:
        return []
    base = f"results/{wildcards.model}/{wildcards.probe}/{wildcards.concept_set}/baselines/clip_dissect"
    return [f"{base}/verify/ar.csv", f"{base}/verify/summary.json", f"{base}/neuron_concepts.csv"]


def print_report_location():
    """After a successful run: say where the report is (when this run built it)."""
    index = Path("results/report/index.html")
    if index.is_file():
        print(f"sieve: the report is {index.resolve()} (open it in a browser; offline, self-contained)")
