# The config (checked against the schema, whose `default:` values fill missing keys), the switches read from
# it, the final targets, and every input function of the rules. Functions live here, rules in the stage files
# (`snakemake --lint` wants them apart). File names come from sieve/paths.py, the one home of the path scheme.

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The sieve package lives next to the rules: this checkout's copy comes first, here and in every job's script
# (workflow/scripts/use_checkout.py), whatever copy an environment has installed.
PACKAGE_DIR = str(Path(workflow.basedir) / "workflow")
if sys.path[:1] != [PACKAGE_DIR]:  # first, even when an installed copy (a .pth) lists it further down
    sys.path.insert(0, PACKAGE_DIR)

from sieve import paths  # noqa: E402  (light: no torch)
from sieve.config import coerce_booleans  # noqa: E402
from sieve.backends import BackendError, activation_spec, embedding_spec  # noqa: E402
from sieve.backends.generators import (  # noqa: E402
    check_generator_source,
    generation_spec,
    speed_resources,
)
from sieve.config_checks import (  # noqa: E402
    ConfigError,
    check_config,
    is_packaged_world,
    trained_checkpoints,
)
from sieve.trained import params as trained_params  # noqa: E402  (yaml only: no torch)

# ---------------------------------------------------------------------------------------------------- config
# Keys that were renamed: the old spelling stops the run with the new one named (the schema alone would only
# say that the key is unexpected).
RENAMED_KEYS = {("evaluate", "ablations"): "evaluate.stage_ablations"}


def check_renamed_keys(cfg):
    """Raise a WorkflowError naming the new key for every renamed key the config still uses."""
    for (section, key), new in RENAMED_KEYS.items():
        if isinstance(cfg.get(section), dict) and key in cfg[section]:
            value = str(cfg[section][key]).lower()
            raise WorkflowError(
                f"config key {section}.{key} was renamed {new}: write "
                f"`{section}: {{{new.split('.')[-1]}: {value}}}` instead"
            )


def check_ablate_neurons_mapping(cfg):
    """`evaluate.ablate_neurons` was one list zeroed in every model entry (in a final layer: a class logit);
    it is now a mapping from model entry to its neurons. The old list stops the run with the new spelling."""
    value = (cfg.get("evaluate") or {}).get("ablate_neurons")
    if isinstance(value, list):
        ids = ", ".join(str(n) for n in value)
        raise WorkflowError(
            "config key evaluate.ablate_neurons is now a mapping from model entry to the neurons to zero in "
            f"that entry's layer: write `evaluate: {{ablate_neurons: {{<model>: [{ids}]}}}}` with <model> one "
            "of models: (a penultimate entry; in a final layer a neuron is a class logit)"
        )


coerce_booleans(config)  # `--config offline=true` arrives as a string
check_renamed_keys(config)
check_ablate_neurons_mapping(config)
validate(config, schema="../schemas/config.schema.yaml")
try:  # what the schema cannot say (finite numbers, local files, architecture names): before any job queues
    check_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# A generator folder that does not exist stops the run when the workflow is parsed, with one message.
try:
    check_generator_source(config["generator"])
except BackendError as exc:
    raise WorkflowError(str(exc)) from None

if config["offline"]:
    for var in ("SIEVE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"


def hypothesize_methods():
    """`hypothesize.methods` when given, else the one `hypothesize.method` (the schema's default: sieve)."""
    hyp = config["hypothesize"]
    return hyp["methods"] if "methods" in hyp else [hyp["method"]]


MODELS = sorted(config["models"])
PROBES = sorted(config["probes"])
CONCEPT_SETS = sorted(config["concept_sets"])
HYPOTHESIZE_METHODS = hypothesize_methods()
GROUND_TRUTH_MODELS = [m for m in MODELS if "ground_truth" in config["models"][m]]
SYNTHETIC_MODELS = [m for m in MODELS if config["models"][m]["source"] == "synthetic"]
# model -> neuron ids, or {best_verified: N, concept_set: ...} (the run's own best verified neurons)
ABLATE_NEURONS = {m: ids for m, ids in config["evaluate"]["ablate_neurons"].items() if ids}
ABLATED_MODELS = sorted(ABLATE_NEURONS)
STAGE_ABLATIONS = config["evaluate"]["stage_ablations"]
# no Select (select.enabled false), no Cluster (hypothesize.cluster false), no Verify (verify.enabled false), and
# none of the three (all three switches off)
STAGE_ABLATION_VARIANTS = ["no_select", "no_cluster", "no_verify", "none"]
SWEEP_TAUS = sorted({float(t) for t in config["sweeps"]["select.tau"]})
SWEEP_TAU_NAMES = {f"{t:g}": t for t in SWEEP_TAUS}
# A sweep reuses the run's own Select/Hypothesize when they already cover its smallest tau.
SWEEP_REUSES_RUN = bool(SWEEP_TAUS) and (
    not config["select"]["enabled"] or SWEEP_TAUS[0] >= config["select"]["tau"]
)
SWEEP_MODEL_PROBE = paths.MODEL_PROBE if SWEEP_REUSES_RUN else paths.SWEEP_MODEL_PROBE
SWEEP_HYPOTHESES = paths.HYPOTHESES if SWEEP_REUSES_RUN else paths.hypotheses(paths.SWEEP_RUN)
# The packaged planted world (`spec: default`, or no spec; the jobs read it from the sieve package) is never an
# input file: its path is the checkout's or the installed package's, which changes when the clone moves or the
# package is reinstalled, and Snakemake reruns a job whose set of input paths changed. The rules that read it
# carry its content digest as the param `packaged_world` instead (Snakemake's params trigger): editing the
# packaged file reruns them, moving it does not. Results name it "default".
PACKAGED_WORLD_SPEC = Path(workflow.basedir) / "workflow" / "sieve" / "synthetic" / "default.yaml"
PACKAGED_WORLD = f"default sha256:{hashlib.sha256(PACKAGED_WORLD_SPEC.read_bytes()).hexdigest()[:16]}"


# The trained world (rules/train.smk): its spec, its models, and the checkpoint path of each (a model entry whose
# `weights` is one of them waits for its training).
TRAINED_SPEC = config["trained_world"]["spec"]
TRAINED_CHECKPOINTS = trained_checkpoints(config)  # normalised path -> trained model name
TRAINED_MODELS = sorted(TRAINED_CHECKPOINTS.values())
TRAINED_PICTURES = os.path.normpath(paths.TRAINED_PICTURES)


def never_matching(names):
    """A wildcard regex over ``names`` (one that matches nothing when there are none)."""
    return "|".join(map(re.escape, names)) if names else "(?!)"


wildcard_constraints:
    model=never_matching(MODELS),
    probe=never_matching(PROBES),
    concept_set=never_matching(CONCEPT_SETS),
    variant=never_matching(STAGE_ABLATION_VARIANTS),
    shard=r"\d+",


# ------------------------------------------------------------------------------------------------- resources
# Each rule states its threads, memory and runtime (per_attempt), and a rule that runs a network `gpu=1` with
# `cpus_per_gpu` (SLURM's --cpus-per-gpu) equal to its threads; profiles hold only site policy.
def per_attempt(amount):
    """A resource (memory in MB, runtime in minutes) that grows with the attempt: a job killed for memory or
    time is retried (the profile's `retries:`) with twice, then three times as much."""

    def resource(wildcards, attempt):
        return amount * attempt

    return resource


# Speed settings (batch sizes, DataLoader workers) change how fast a job runs, never what it writes. They reach
# the scripts as `resources:` rather than `params:`, so that tuning them for a GPU never reruns a finished probe
# or embedding (Snakemake's params trigger would).
def model_batch_size(wildcards):
    return model_spec(wildcards)["batch_size"]


# ------------------------------------------------------------------------------------------------ user text
def verbatim(value):
    """A param that reaches the script exactly as the config gives it. Snakemake formats a string param (and
    each string of a list param) with the job's wildcards: `{x}` in a title stopped the parse with a
    WildcardError naming no key, and `{concept_set}` in a template became the set's name. What a function
    returns is never formatted, so every free-text string of the config (title, template, prompt, hub id) is a
    param through this. Dict params (model, probe, embedder and generator specs with their kwargs) are never
    formatted; paths that rules track as inputs are checked at parse time (sieve.config_checks)."""

    def param(wildcards):
        return value

    return param


# ---------------------------------------------------------------------------------------------------- specs
def model_spec(wildcards):
    return config["models"][wildcards.model]


def generator_result_spec():
    """The generator spec as a param: without its speed settings (batch size, channels-last, torch.compile),
    which reach the shard job as resources (generator_speed)."""
    return generation_spec(config["generator"])


def generator_speed(key):
    """One generator speed setting as a resource (an int or a string): changing it reruns nothing."""
    return speed_resources(config["generator"])[key]


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


def final_layer_clip_model():
    """The CLIP of the final-layer metrics' CLIP cos: `evaluate.clip_model`, else the embedder."""
    return config["evaluate"].get("clip_model", config["embedder"])


def world_spec_file(spec):
    """The YAML file a synthetic entry reads (`spec:` of a model or probe set, `synthetic:` of a concept set),
    as a list: an input of the rules that use it, so that editing the world reruns them (a path alone is only a
    param). Empty for the packaged world, which the param `packaged_world` tracks (PACKAGED_WORLD)."""
    return [] if is_packaged_world(spec) else [os.path.expanduser(spec)]


def packaged_world(*specs):
    """The param `packaged_world` of the rules reading the world ``specs``: PACKAGED_WORLD (its name and content
    digest) when one of them is the packaged world, else None."""
    return PACKAGED_WORLD if any(is_packaged_world(spec) for spec in specs) else None


def concept_set_inputs(wildcards):
    """Local files a concept set is read from (hypothesize.smk), so that editing one reruns that set only."""
    spec = concept_set_spec(wildcards)
    if "path" in spec:
        return [os.path.expanduser(spec["path"])]
    if "synthetic" in spec:
        return world_spec_file(spec["synthetic"])
    return []


def concept_set_packaged_world(wildcards):
    spec = concept_set_spec(wildcards)
    return packaged_world(spec["synthetic"]) if "synthetic" in spec else None


def probe_worlds(wildcards):
    """The world specs a probe job reads: a synthetic model's and a synthetic probe set's; none for real ones."""
    worlds = []
    if model_spec(wildcards)["source"] == "synthetic":
        worlds.append(model_spec(wildcards).get("spec"))
    if probe_spec(wildcards)["kind"] == "synthetic":
        worlds.append(probe_spec(wildcards).get("spec"))
    return worlds


def probe_world_specs(wildcards):
    """World spec files of a synthetic model or probe set (probe.smk)."""
    return sorted({path for spec in probe_worlds(wildcards) for path in world_spec_file(spec)})


def probe_packaged_world(wildcards):
    return packaged_world(*probe_worlds(wildcards))


def model_is_synthetic(wildcards):
    return config["models"][wildcards.model]["source"] == "synthetic"


def world_spec(wildcards):
    """The world spec of a synthetic model, for its planted truth ('default' when the model names none)."""
    spec = config["models"][wildcards.model]
    if spec["source"] != "synthetic":
        raise WorkflowError(
            f"truth of model {wildcards.model!r}: only synthetic models (source: synthetic) have a planted truth"
        )
    return spec.get("spec", "default")


def world_spec_input(wildcards):
    """The world spec file itself, so that editing it reruns the truth (none for the packaged world)."""
    return world_spec_file(world_spec(wildcards))


def stage_ablation_world_spec(wildcards):
    return config["models"][wildcards.model].get("spec", "default")


def model_packaged_world(wildcards):
    """`packaged_world` of the truth and the stage ablation table: a synthetic model's world."""
    return packaged_world(stage_ablation_world_spec(wildcards)) if model_is_synthetic(wildcards) else None


def trained_training_params(wildcards):
    """The param `training` of a trained-world model: the content of what changes its weights."""
    return trained_params.training_params(TRAINED_SPEC, wildcards.trained)


def trained_picture_params():
    """The param `pictures` of the class names and the held-out pictures: the content that changes them."""
    return trained_params.picture_params(TRAINED_SPEC)


def trained_checkpoint(wildcards):
    """The model's checkpoint when the trained world makes it (an input: the model waits for its training, and
    retraining reruns what read it); none for any other model."""
    weights = config["models"][wildcards.model].get("weights")
    if isinstance(weights, str) and os.path.normpath(weights) in TRAINED_CHECKPOINTS:
        return [weights]
    return []


def trained_probe_pictures(wildcards):
    """The probe set's folder when it is the trained world's held-out pictures (made by trained_pictures)."""
    path = config["probes"][wildcards.probe].get("path")
    if isinstance(path, str) and os.path.normpath(path) == TRAINED_PICTURES:
        return [paths.TRAINED_PICTURES]
    return []


def ablation_concept_set(model):
    """The concept set whose SIEVE-verified neurons `evaluate.ablate_neurons.<model>: {best_verified: N}` takes:
    its `concept_set`, or the config's only one."""
    name = ABLATE_NEURONS[model].get("concept_set")
    key = f"config key evaluate.ablate_neurons.{model}"
    if "sieve" not in HYPOTHESIZE_METHODS:
        raise WorkflowError(f"{key}: best_verified needs hypothesize.methods to include sieve")
    if name is None:
        if len(CONCEPT_SETS) == 1:
            return CONCEPT_SETS[0]
        raise WorkflowError(
            f"{key}: best_verified needs concept_set: one of {', '.join(CONCEPT_SETS)} (the config has several)"
        )
    if name not in CONCEPT_SETS:
        raise WorkflowError(
            f"{key}.concept_set: no concept set {name!r} in concept_sets: ({', '.join(CONCEPT_SETS)})"
        )
    return name


def ablation_verified(wildcards):
    """The run's neuron_concepts.csv when the ablated neurons are its best verified ones; else nothing."""
    if not isinstance(ABLATE_NEURONS[wildcards.model], dict):
        return []
    run = paths.RUN.replace("{concept_set}", ablation_concept_set(wildcards.model))
    return [paths.verify_files(run)["neuron_concepts"]]


for _model, _choice in ABLATE_NEURONS.items():  # a wrong concept set stops the parse, not the job
    if isinstance(_choice, dict):
        ablation_concept_set(_model)


def ground_truth_file(wildcards):
    """A model's class list: its local file, or the cleaned copy of a published list (rule ground_truth_list)."""
    gt = config["models"][wildcards.model].get("ground_truth")
    if isinstance(gt, dict):
        return [paths.GROUND_TRUTH_LIST.format(model=wildcards.model)]
    return [os.path.expanduser(gt)] if gt else []


# -------------------------------------------------------------------------------------------- final targets
def over_runs(pattern, models=None):
    """Expand a path pattern over every (model, probe, concept set); a pattern without {concept_set} (or
    without {probe}) expands to one path per model/probe pair."""
    return expand(pattern, model=models or MODELS, probe=PROBES, concept_set=CONCEPT_SETS)


def get_hypotheses_patterns():
    """The one list of hypotheses folders whose concepts the generation shards produce: each method's, and a
    tau sweep's own (a concept named twice is generated once)."""
    patterns = [
        paths.hypotheses(paths.method_root(m)) for m in ("sieve", "clip_dissect") if m in HYPOTHESIZE_METHODS
    ]
    # the sweep's hypotheses need generated images even when SIEVE's own Verify is off (`method: clip_dissect`)
    if SWEEP_TAUS and SWEEP_HYPOTHESES not in patterns:
        patterns.append(SWEEP_HYPOTHESES)
    return patterns


def get_stage_outputs():
    """Every result the config switches on, except the report (which reads them all)."""
    outs = over_runs(paths.SELECT_SUMMARY) + over_runs(paths.RATIO_HISTOGRAM)
    if "sieve" in HYPOTHESIZE_METHODS:
        outs += over_runs(paths.GRIDS)
        outs += over_runs(paths.VERIFY["neuron_concepts"]) + over_runs(paths.VERIFY["summary"])
    if SYNTHETIC_MODELS:
        outs += over_runs(paths.TRUTH_CSV, SYNTHETIC_MODELS) + over_runs(
            paths.TRUTH_SUMMARY, SYNTHETIC_MODELS
        )
    if STAGE_ABLATIONS:
        outs += over_runs(paths.STAGE_ABLATION_TABLE)
    if "clip_dissect" in HYPOTHESIZE_METHODS:
        clip_dissect = paths.verify_files(paths.CLIP_DISSECT)
        outs += over_runs(clip_dissect["summary"]) + over_runs(clip_dissect["neuron_concepts"])
    if GROUND_TRUTH_MODELS:
        outs += over_runs(paths.FINAL_LAYER_METRICS, GROUND_TRUTH_MODELS)
        if SWEEP_TAUS or STAGE_ABLATIONS:
            outs += over_runs(paths.FINAL_LAYER_VARIANTS, GROUND_TRUTH_MODELS)
    if ABLATED_MODELS:
        outs += over_runs(paths.NEURON_ABLATION, ABLATED_MODELS)
    if SWEEP_TAUS:
        outs += over_runs(paths.SWEEP_TABLE)
    return outs


def get_generation_plans():
    """The generation plans (checkpoint folders) of the run and of the stage ablations. Targets of a plain
    `snakemake`: a removed plan is planned again (Snakemake looks behind a checkpoint only when a job after it
    has to run), and the plan's audit notices whatever else of the generation cache is missing or damaged."""
    if not get_hypotheses_patterns():
        return []
    plans = [paths.GENERATION_PLAN]
    if STAGE_ABLATIONS:
        plans.append(paths.generation_plan(paths.STAGE_ABLATION_GENERATE))
    return plans


def get_final_output():
    """What `snakemake` with no target builds: every stage's results, the report over them, and the generation
    plans (see get_generation_plans)."""
    return get_stage_outputs() + [paths.REPORT_HTML] + get_generation_plans()


def trained_records():
    """The training records (training.json) of the trained-world models the config loads (the report's table)."""
    used = set()
    for m in config["models"].values():
        weights = m.get("weights")
        if isinstance(weights, str) and os.path.normpath(weights) in TRAINED_CHECKPOINTS:
            used.add(TRAINED_CHECKPOINTS[os.path.normpath(weights)])
    return expand(paths.TRAINED_METRICS, trained=sorted(used))


def get_report_inputs(wildcards):
    """The report reads every other final output, so it runs last."""
    return sorted(set(get_stage_outputs() + trained_records()))


# ------------------------------------------------------------------------------------------------- Verify
def get_hypotheses_dirs(wildcards):
    """Every hypotheses folder whose concepts the generation shards produce."""
    dirs = []
    for pattern in get_hypotheses_patterns():
        dirs += over_runs(pattern)
    return dirs


def get_control_concept_sets(wildcards):
    """The concepts.json of every concept set: each set's control pool (verify.controls of its concepts, and
    the neutral prompts) is generated with the hypotheses' concepts, once per run."""
    return expand(paths.CONCEPTS_JSON, concept_set=CONCEPT_SETS)


# The generation plan's audit (sieve.verify.plan.audit_plan) is a param of the plan checkpoint: a damaged or
# removed cache entry changes it, so a plain `snakemake` plans again and regenerates it. Computed once per
# plan folder and process, and only read (a dry run writes nothing).
_AUDITS = {}


def generation_audit(plan_dir):
    """The params function of a generation plan below ``plan_dir``."""

    def audit(wildcards):
        if plan_dir not in _AUDITS:
            from sieve.verify.plan import audit_plan

            _AUDITS[plan_dir] = audit_plan(plan_dir, paths.GENERATE_CACHE)
        return _AUDITS[plan_dir]

    return audit


def planned_manifests(plan, shard_pattern):
    """Every shard's manifest: a job's (``shard_pattern``) for a shard the plan found work for, the plan's own
    for the others (no job). ``plan``: the checkpoint (its result is read once it has run)."""
    from sieve.verify.plan import current_manifests

    return current_manifests(plan.get().output.plan, shard_pattern)


def job_leader(plan, shard_pattern):
    """Input function of a shard job: with ``generator.shards_per_job`` > 1, a shard that is not the first of
    its generation job waits for the first one's manifest (that job generated its concepts: it then finds them
    cached and loads no pipeline). Nothing with one shard per job (the default)."""

    def leader(wildcards):
        from sieve.config import with_defaults
        from sieve.verify.plan import job_of

        per_job = int(with_defaults(config["generator"], "generator")["shards_per_job"])
        if per_job == 1:
            return []
        first = job_of(plan.get().output.plan, int(wildcards.shard), per_job)[0]
        return [] if first == int(wildcards.shard) else [shard_pattern.format(shard=first)]

    return leader


def get_shard_manifests(wildcards):
    """The manifests of all generation shards (GPU jobs only for the shards with work)."""
    return planned_manifests(checkpoints.generation_plan, paths.GENERATION_SHARD)


def get_truth_baselines(wildcards):
    """Verify files of the baselines that the truth stage puts beside SIEVE in truth_summary.json."""
    if "clip_dissect" not in HYPOTHESIZE_METHODS:
        return []
    out = rules.clip_dissect_activation_rate.output
    return [out.ar, out.summary, out.neuron_concepts]


# ------------------------------------------------------------------------------------------------ baselines
def raw_concept_embeddings(wildcards):
    """CLIP-Dissect embeds concept text raw: reuse Hypothesize's embeddings when its template is "{}"."""
    if config["hypothesize"]["template"] == "{}":
        return rules.embed_concepts.output.h5
    return rules.embed_concepts_raw.output.h5


def final_layer_inputs(wildcards):
    """The labels of every method of a classifier layer, and its ground-truth class names."""
    ins = {"select": rules.select_neurons.output.summary, "ground_truth": ground_truth_file(wildcards)[0]}
    if "sieve" in HYPOTHESIZE_METHODS:
        ins["sieve_hypotheses"] = rules.hypothesize.output.hypotheses
        ins["sieve_neuron_concepts"] = rules.activation_rate.output.neuron_concepts
    if "clip_dissect" in HYPOTHESIZE_METHODS:
        ins["clip_dissect_hypotheses"] = rules.clip_dissect.output.hypotheses
        ins["clip_dissect_neuron_concepts"] = rules.clip_dissect_activation_rate.output.neuron_concepts
        ins["clip_dissect_labels"] = rules.clip_dissect.output.labels
    return ins


def final_layer_variant_inputs(wildcards):
    """The neuron_concepts.csv of every tau of the sweep and every stage-ablation variant (the run's own is
    `full`), the run's Select and the ground truth: the final-layer columns of Tables 4 and 5."""
    ins = {"select": rules.select_neurons.output.summary, "ground_truth": ground_truth_file(wildcards)[0]}
    for name in SWEEP_TAU_NAMES:
        ins[f"tau={name}"] = expand(rules.sweep_tau.output.neuron_concepts, tau=name, allow_missing=True)[0]
    if STAGE_ABLATIONS:
        ins["full"] = rules.activation_rate.output.neuron_concepts
        for v in STAGE_ABLATION_VARIANTS:
            ins[v] = paths.verify_files(paths.stage_ablation_run(v))["neuron_concepts"]
    return ins


# ---------------------------------------------------------------------------------------------------- sweeps
def sweep_select_summary(wildcards):
    return paths.select_summary(SWEEP_MODEL_PROBE)


def sweep_hypotheses(wildcards):
    return SWEEP_HYPOTHESES


def sweep_tau_value(wildcards):
    return SWEEP_TAU_NAMES[wildcards.tau]


def sweep_summaries(wildcards):
    return expand(rules.sweep_tau.output.summary, tau=list(SWEEP_TAU_NAMES), allow_missing=True)


# -------------------------------------------------------------------------------------------- stage ablations
# Which stages a variant switches off: `none` (the paper's row with none of the three stages) all three.
STAGE_ABLATION_OFF = {
    "no_select": {"select"},
    "no_cluster": {"cluster"},
    "no_verify": {"verify"},
    "none": {"select", "cluster", "verify"},
}


def stage_off(wildcards, stage):
    return stage in STAGE_ABLATION_OFF[wildcards.variant]


def stage_ablation_crops(wildcards):
    """Without Select, every neuron's crops (no_select's); the other variants reuse the run's crops."""
    if stage_off(wildcards, "select"):
        return rules.stage_ablation_embed_crops.output.h5
    return rules.embed_crops.output.h5


def stage_ablation_cluster_switch(wildcards):
    return not stage_off(wildcards, "cluster")


def stage_ablation_select(wildcards):
    if stage_off(wildcards, "select"):
        return rules.stage_ablation_select_neurons.output.summary
    return rules.select_neurons.output.summary


def stage_ablation_hypothesizes(variant):
    """Whether a variant hypothesises anew: every one but no_verify, which reads the run's own hypotheses."""
    return STAGE_ABLATION_OFF[variant] != {"verify"}


def stage_ablation_hypotheses(wildcards):
    if not stage_ablation_hypothesizes(wildcards.variant):
        return rules.hypothesize.output.hypotheses
    return rules.stage_ablation_hypothesize.output.hypotheses


def stage_ablation_manifests(wildcards):
    if not stage_ablation_hypothesizes(wildcards.variant):
        return get_shard_manifests(wildcards)
    return planned_manifests(
        checkpoints.stage_ablation_generation_plan, paths.generation_shard(paths.STAGE_ABLATION_GENERATE)
    )


def stage_ablation_verify_switch(wildcards):
    return not stage_off(wildcards, "verify")


def stage_ablation_hypotheses_dirs(wildcards):
    """The hypotheses of the variants that hypothesise anew (no Verify reuses the run's)."""
    return expand(
        rules.stage_ablation_hypothesize.output.hypotheses,
        model=MODELS,
        probe=PROBES,
        concept_set=CONCEPT_SETS,
        variant=[v for v in STAGE_ABLATION_VARIANTS if stage_ablation_hypothesizes(v)],
    )


def stage_ablation_table_inputs(wildcards):
    """The run's own Select and Verify ("full") and every variant's, plus a synthetic model's world spec file
    (none for the packaged world)."""
    full = rules.activation_rate.output
    files = {
        "full_select": rules.select_neurons.output.summary,
        "full_verify_summary": full.summary,
        "full_ar": full.ar,
        "full_neuron_concepts": full.neuron_concepts,
    }
    for v in STAGE_ABLATION_VARIANTS:
        variant = paths.verify_files(paths.stage_ablation_run(v))
        select = (
            rules.stage_ablation_select_neurons.output.summary
            if "select" in STAGE_ABLATION_OFF[v]
            else files["full_select"]
        )
        files[f"{v}_select"] = select
        files[f"{v}_verify_summary"] = variant["summary"]
        files[f"{v}_ar"] = variant["ar"]
        files[f"{v}_neuron_concepts"] = variant["neuron_concepts"]
    if model_is_synthetic(wildcards):
        files["world"] = world_spec_file(stage_ablation_world_spec(wildcards))
    return files


def get_stage_ablation_outputs():
    return over_runs(paths.STAGE_ABLATION_TABLE)


# ------------------------------------------------------------------------------------------------- the report
def print_report_location():
    """After a successful run: say where the report is (when this run built it)."""
    index = Path(paths.REPORT_HTML)
    if index.is_file():
        print(f"sieve: the report is {index.resolve()} (open it in a browser; offline, self-contained)")
