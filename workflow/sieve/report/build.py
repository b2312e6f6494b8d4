"""The final report: one static, offline HTML page over everything the stages wrote.

``build_report`` reads the result tree of every (model, probe, concept set) by the workflow's path scheme
(every file but the selection summary is optional, so a run stopped after Select still gets a report),
writes web-sized JPEG thumbnails into ``assets/`` and one ``index.html`` whose data is a JSON blob that
``report.js`` renders: the neuron table is paged, cards are built only for the rows on screen and their
images load lazily, so 2,048 neurons stay usable.

Concept text is untrusted. The page never parses data as HTML (``report.js`` builds the DOM with
``textContent``), and the JSON blob is escaped so that no ``</script>`` or ``<!--`` can end the element
that holds it (:func:`~.assets.embed_json`).

Modules: :mod:`.values` (tolerant readers), :mod:`.results` (one method's hypotheses and AR), :mod:`.assets`
(page and thumbnails), :mod:`.tables` (generic, comparison and settings tables), :mod:`.grids` (the neuron
grids, drawn by their own rule); this one gathers a run (:func:`collect_run`) and writes the page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..evaluate.truth import PLANTED_COLUMN
from ..io import _jsonable, write_text
from ..paths import (
    AR_FILE,
    CLUSTERS_DIR,
    GENERATED_FILE,
    GRIDS_DIR,
    HYPOTHESES_DIR,
    METHOD_DIRS,
    NEURON_ABLATION_DIR,
    NEURON_CONCEPTS_FILE,
    RATIO_HISTOGRAM_FILE,
    SELECT_SUMMARY_FILE,
    STAGE_ABLATIONS,
    TRUTH_FILE,
    TRUTH_SUMMARY_FILE,
    VERIFY_SUMMARY_FILE,
)
from .assets import Assets, render_html
from .cost_table import cost_table_or_none
from .paper import paper_tables
from .results import GeneratedActivations, best_ar, generated_activations, method_result, verified_concepts
from .tables import (
    ar_distribution_png,
    comparison_table,
    count_concepts,
    extra_tables,
    read_benchmarks,
    settings_tables,
    truth_tables,
    write_table_csv,
)
from .values import (
    ReportError,
    as_bool,
    as_items,
    as_number,
    cluster_id,
    display_cell,
    load_csv,
    load_json,
    rounded,
)

log = logging.getLogger(__name__)

GRID_MAX_SIZE = 960  # px, width of a neuron's top-image grid (the grids are drawn ~830 px wide)
GRID_MAX_HEIGHT = (
    2400  # px: a grid is tall (a row of activation maps below each row of images), keep it legible
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
STATIC_FILES = ("report.js", "report.css")


# ----------------------------------------------------------------------------------------------------------
# one (model, probe, concept set), phase by phase


def read_selection(mp: Path) -> tuple[Path, dict[str, Any]]:
    """Phase 1: the selection summary, the one file a run must have."""
    sel_path = mp / SELECT_SUMMARY_FILE
    if not sel_path.is_file():
        raise ReportError(f"missing selection summary {sel_path} (run the select stage first)")
    sel = load_json(sel_path)
    for key in ("tau", "neurons"):
        if key not in sel:
            raise ReportError(f"{sel_path}: no '{key}'")
    return sel_path, sel


def read_methods(
    run_dir: Path,
    workdir: Path,
    n_gen: int,
    assets: Assets,
    gen_acts: GeneratedActivations | None = None,
    thresholds: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Phase 2: SIEVE's and every baseline's hypotheses and AR (:data:`METHOD_DIRS`), those that exist, with the
    neuron's activation on each generated image where Verify's results hold it."""
    methods: dict[str, dict[str, Any]] = {}
    for method, sub in METHOD_DIRS.items():
        res = method_result(run_dir / sub if sub else run_dir, workdir, n_gen, assets, gen_acts, thresholds)
        if res is not None:
            methods[method] = res
    return methods


def read_truth(run_dir: Path) -> dict[str, dict[str, str]]:
    """Phase 3: ``truth.csv`` (a synthetic model's planted truth) as neuron -> column -> displayed text."""
    truth: dict[str, dict[str, str]] = {}
    truth_path = run_dir / TRUTH_FILE
    if truth_path.is_file():
        for r in load_csv(truth_path):
            if "neuron" not in r:
                raise ReportError(f"{truth_path}: needs a 'neuron' column")
            truth[str(r["neuron"])] = {k: display_cell(v or "") for k, v in r.items() if k != "neuron"}
    return truth


def neuron_status(selected: bool, dead: bool, main: dict[str, Any] | None, verified: list[Any]) -> str:
    if dead:
        return "dead"
    if not selected:
        return "rejected"
    if main and main["verified"]:
        return "verified" if verified else "unverified"
    return "selected"


def neuron_rows(
    sel_path: Path,
    sel: dict[str, Any],
    methods: dict[str, dict[str, Any]],
    truth: dict[str, dict[str, str]],
    card: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Phase 4: one table row per neuron of the layer, and a card per selected neuron (``card(nid, info,
    clusters)`` draws it)."""
    main = methods.get("sieve")
    baseline_names = [m for m in methods if m != "sieve"]
    neurons, cards = [], {}
    for nid, info in sorted(sel["neurons"].items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        where = f"{sel_path} neuron {nid}"
        selected = as_bool(info.get("selected"))
        clusters = main["clusters"].get(nid, []) if main else []
        verified = verified_concepts(clusters)
        row: dict[str, Any] = {
            "id": nid,
            "ratio": rounded(as_number(info.get("ratio"), where + " ratio")),
            "selected": selected,
            "status": neuron_status(selected, as_bool(info.get("dead")), main, verified),
            "k": None,
            "verified": verified,
            "best_ar": rounded(best_ar(clusters)),
        }
        if truth:
            row["truth"] = truth.get(nid, {}).get(PLANTED_COLUMN, "")
        for b in baseline_names:
            row.setdefault("baselines", {})[b] = verified_concepts(methods[b]["clusters"].get(nid, []))
        if selected:
            c = card(nid, info, clusters)
            row["k"] = len(c["clusters"]) or None
            for b in baseline_names:
                c.setdefault("baselines", {})[b] = methods[b]["clusters"].get(nid, [])
            if nid in truth:
                c["truth"] = [[k, v] for k, v in truth[nid].items()]
            cards[nid] = c
        neurons.append(row)
    return neurons, cards


def run_facts(
    model: str,
    probe: str,
    concept_set: str,
    sel: dict[str, Any],
    neurons: list[dict[str, Any]],
    main: dict[str, Any] | None,
) -> list[list[Any]]:
    """Phase 5: the run's key facts (layer, images, tau, counts, mean ARs)."""
    facts = [
        ["model", model],
        ["layer", sel.get("layer", "")],
        ["probe", probe],
        ["images", sel.get("n_images")],
        ["skipped images", sel.get("n_skipped", 0)],
        ["concept set", concept_set],
        ["tau", sel["tau"]],
        ["neurons in layer", sel.get("n_neurons", len(neurons))],
        ["selected", sel.get("n_selected", sum(r["selected"] for r in neurons))],
    ]
    if sel.get("n_dead") is not None:
        facts.append(["dead", sel["n_dead"]])
    if main and main["summary"]:
        vs = main["summary"]
        facts += [
            ["hypotheses", vs.get("n_hypotheses")],
            ["verified neurons", vs.get("n_verified")],
            ["mean AR initial", rounded(as_number(vs.get("mean_ar_initial"), "mean_ar_initial"))],
            ["hypotheses kept", vs.get("n_kept")],
            ["mean AR kept", rounded(as_number(vs.get("mean_ar_kept"), "mean_ar_kept"))],
        ]
        if isinstance(vs.get("filters"), dict):
            facts += [
                ["Verify filter", vs.get("filter")],
                ["kept by the paper's rule", (vs["filters"].get("paper") or {}).get("n_kept")],
                ["kept by the specificity filter", (vs["filters"].get("specificity") or {}).get("n_kept")],
                ["mean control rate", rounded(as_number(vs.get("mean_control_rate"), "mean_control_rate"))],
            ]
    return facts


def ar_panels(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The AR values and means of each method that has some (the AR histograms)."""
    return {
        m: {
            "values": r["ar_values"],
            "mean_initial": rounded(
                as_number((r["summary"] or {}).get("mean_ar_initial"), "mean_ar_initial")
            ),
            "mean_kept": rounded(as_number((r["summary"] or {}).get("mean_ar_kept"), "mean_ar_kept")),
        }
        for m, r in methods.items()
        if r["ar_values"]
    }


def control_panels(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's AR-versus-control-rate scatter (hypotheses scored against the control pool): the points,
    the specificity filter's cap and the initial mean AR (the paper's rule), and which filter is active."""
    out = {}
    for m, r in methods.items():
        if not r["control_points"]:
            continue
        vs = r["summary"] or {}
        out[m] = {
            "points": r["control_points"],
            "mean_initial": rounded(as_number(vs.get("mean_ar_initial"), "mean_ar_initial")),
            "max_control_rate": rounded(as_number(vs.get("max_control_rate"), "max_control_rate")),
            "filter": vs.get("filter", "paper"),
        }
    return out


def run_anchor(model: str, probe: str, concept_set: str) -> str:
    """The page's fragment of a section: ``{model}/{probe}/{concept_set}``, each name URL-escaped. It names the
    section, so a link stays valid when models, probes or concept sets are added to the config."""
    return "/".join(quote(name, safe="") for name in (model, probe, concept_set))


def card_anchor(run: str, neuron: str) -> str:
    """The fragment of a neuron's card: ``{run anchor}/n{neuron}`` (``#synthetic/synthetic/synthetic/n7``)."""
    return f"{run}/n{quote(neuron, safe='')}"


def run_files(results: Path, model: str, probe: str, concept_set: str, assets: Assets) -> list[list[str]]:
    """[label, link] of the result files a section is built from (those that exist), for the page to link to."""
    mp, run_dir = results / model / probe, results / model / probe / concept_set
    files = [
        ("selection summary", mp / SELECT_SUMMARY_FILE),
        ("neuron table (CSV)", run_dir / NEURON_CONCEPTS_FILE),
        ("Activation Rate of every hypothesis (CSV)", run_dir / AR_FILE),
        ("Verify summary", run_dir / VERIFY_SUMMARY_FILE),
        ("generated images", run_dir / GENERATED_FILE),
        ("planted truth (CSV)", run_dir / TRUTH_FILE),
        ("planted truth summary", run_dir / TRUTH_SUMMARY_FILE),
    ]
    for method, sub in METHOD_DIRS.items():
        if sub:
            files += [
                (f"{method}: neuron table (CSV)", run_dir / sub / NEURON_CONCEPTS_FILE),
                (f"{method}: Activation Rate (CSV)", run_dir / sub / AR_FILE),
            ]
    return [[label, assets.link(path)] for label, path in files if path.is_file()]


def collect_run(
    results: Path,
    model: str,
    probe: str,
    concept_set: str,
    assets: Assets,
    n_gen: int = 4,
    workdir: Path | None = None,
    gen_acts: GeneratedActivations | None = None,
) -> dict[str, Any]:
    """Everything the page shows for one (model, probe, concept set), phase by phase."""
    mp = results / model / probe
    sel_path, sel = read_selection(mp)
    run_dir = mp / concept_set
    asset_prefix = f"{model}/{probe}"
    anchor = run_anchor(model, probe, concept_set)
    hist = mp / RATIO_HISTOGRAM_FILE
    histogram = assets.copy(hist, f"{asset_prefix}/ratio_histogram.png") if hist.is_file() else None
    thresholds = {
        nid: t
        for nid, info in sel["neurons"].items()
        if (t := as_number(info.get("threshold"), f"{sel_path} neuron {nid} threshold")) is not None
    }
    if gen_acts is None:
        gen_acts = generated_activations(results, workdir or results.parent, model)
    methods = read_methods(run_dir, workdir or results.parent, n_gen, assets, gen_acts, thresholds)
    truth = read_truth(run_dir)
    neurons, cards = neuron_rows(
        sel_path,
        sel,
        methods,
        truth,
        lambda nid, info, clusters: neuron_card(
            mp, nid, info, clusters, assets, asset_prefix, card_anchor(anchor, nid), run_dir
        ),
    )
    ts_path = run_dir / TRUTH_SUMMARY_FILE
    truth_summary = load_json(ts_path) if ts_path.is_file() else None
    tables = truth_tables(truth_summary) if truth_summary is not None else []
    for t in tables:
        t["source"] = assets.link(ts_path)
    tables += extra_tables(run_dir, results / STAGE_ABLATIONS / model / probe / concept_set, assets.link)
    run: dict[str, Any] = {
        "key": f"{model} / {probe} / {concept_set}",
        "anchor": anchor,
        "model": model,
        "probe": probe,
        "concept_set": concept_set,
        "files": run_files(results, model, probe, concept_set, assets),
        "layer": sel.get("layer", ""),
        "tau": sel["tau"],
        "facts": run_facts(model, probe, concept_set, sel, neurons, methods.get("sieve")),
        "histogram": histogram,
        "ar": ar_panels(methods),
        "control": control_panels(methods),
        "methods": list(methods),
        "baselines": [m for m in methods if m != "sieve"],
        "has_truth": bool(truth),
        "tables": tables,
        "neurons": neurons,
        "cards": cards,
        "_summaries": {m: r["summary"] for m, r in methods.items()},
        "_select": sel,
        "_truth_summary": truth_summary,
    }
    if sel.get("degenerate"):  # Select's warning (sieve.select.degenerate_selection), above the facts
        run["warnings"] = [sel["degenerate"]["message"]]
    return run


def neuron_card(
    mp: Path,
    nid: str,
    info: dict[str, Any],
    clusters: list[dict[str, Any]],
    assets: Assets,
    prefix: str,
    anchor: str = "",
    run_dir: Path | None = None,
) -> dict[str, Any]:
    """A selected neuron's card: its statistics, grid, clusters with their top images' ranks and activations
    (``top``: activation by rank), hypotheses, and links to the files it was drawn from."""
    card: dict[str, Any] = {
        "anchor": anchor,
        "p99": rounded(as_number(info.get("p99"), "p99")),
        "median": rounded(as_number(info.get("median"), "median")),
        "threshold": rounded(as_number(info.get("threshold"), "threshold")),
        "grid": None,
        "clusters": [],
        "dropped": [],
        "silhouette": None,
        "top": [],
        "files": [],
    }
    grid = mp / GRIDS_DIR / f"{nid}.jpg"
    if not grid.is_file():
        grid = (
            next((g for g in (mp / GRIDS_DIR).glob(f"{nid}.*") if g.suffix.lower() in IMAGE_SUFFIXES), grid)
            if (mp / GRIDS_DIR).is_dir()
            else grid
        )
    if grid.is_file():
        card["grid"] = assets.thumbnail(grid, f"{prefix}/grids/{nid}.jpg", GRID_MAX_SIZE, GRID_MAX_HEIGHT)
        card["files"].append(["grid, full size", assets.link(grid)])
    neuron_ablation = (
        mp / NEURON_ABLATION_DIR / f"{nid}.png"
    )  # evaluate.ablate_neurons: per-class accuracy drop
    if neuron_ablation.is_file():
        card["ablation"] = assets.thumbnail(neuron_ablation, f"{prefix}/ablation/{nid}.jpg", GRID_MAX_SIZE)
    members: dict[str, Any] = {}
    cl_path = mp / CLUSTERS_DIR / f"{nid}.json"
    if cl_path.is_file():
        doc = load_json(cl_path)
        try:
            items = as_items(doc.get("clusters"), "cluster") if isinstance(doc, dict) else []
        except ReportError as exc:
            raise ReportError(f"{cl_path}: {exc}") from None
        for j, item in enumerate(items):
            members[cluster_id(item, j)] = item.get("members", item.get("ranks", []))
        card["dropped"] = doc.get("dropped", []) if isinstance(doc, dict) else []
        card["silhouette"] = _jsonable(doc.get("silhouette")) if isinstance(doc, dict) else None
        card["top"] = top_activations(doc, cl_path)
        card["files"].append(["clusters and crops", assets.link(cl_path)])
    hyp_path = run_dir / HYPOTHESES_DIR / f"{nid}.json" if run_dir is not None else None
    if hyp_path is not None and hyp_path.is_file():
        card["files"].append(["hypotheses", assets.link(hyp_path)])
    order = list(members) + [c["id"] for c in clusters if c["id"] not in members]
    by_id = {c["id"]: c for c in clusters}
    for cid in order:
        card["clusters"].append(
            {"id": cid, "members": members.get(cid, []), "concepts": by_id.get(cid, {}).get("concepts", [])}
        )
    return card


def top_activations(doc: Any, where: Path) -> list[Any]:
    """The pooled activation of each top image, by rank, from a clusters file's ``crops`` (None where absent)."""
    crops = doc.get("crops") if isinstance(doc, dict) else None
    if not isinstance(crops, list):
        return []
    out: list[Any] = [None] * len(crops)
    for i, c in enumerate(crops):
        if isinstance(c, dict):
            rank = c.get("rank", i)
            if isinstance(rank, int) and 0 <= rank < len(out):
                out[rank] = rounded(as_number(c.get("activation"), f"{where} crop {i} activation"))
    return out


def build_report(
    out_html: str | Path,
    assets_dir: str | Path,
    *,
    models: Sequence[str],
    probes: Sequence[str],
    concept_sets: Sequence[str],
    results: str | Path = "results",
    benchmarks: str | Path = "benchmarks",
    workdir: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    title: str = "sieve report",
    generated_per_concept: int = 4,
    comparison_csv: str | Path | None = None,
    ar_png: str | Path | None = None,
) -> dict[str, Any]:
    """Build the report; returns the data blob the page renders (handy for tests)."""
    out_html = Path(out_html)
    report_dir = out_html.parent
    assets_dir = Path(assets_dir)
    assets_dir.mkdir(parents=True, exist_ok=True)
    assets = Assets(report_dir, assets_dir)
    results = Path(results)
    workdir = Path(workdir) if workdir is not None else results.parent
    gen_acts = {
        m: generated_activations(results, workdir, m) for m in models
    }  # manifests read once per model
    runs = [
        collect_run(results, m, p, cs, assets, generated_per_concept, workdir, gen_acts[m])
        for m in models
        for p in probes
        for cs in concept_sets
    ]
    settings = dict(settings or {})
    settings["concept_counts"] = count_concepts(results, concept_sets)
    comparison = comparison_table(runs)
    paper = paper_tables(runs, settings.get("models") or {}, results, assets.link)
    timing = read_benchmarks(benchmarks)
    cost = cost_table_or_none(
        settings, results, Path(benchmarks), models, probes, concept_sets, settings["concept_counts"]
    )
    data = {
        "title": title,
        "settings": settings_tables(settings, runs),
        "comparison": comparison,
        "paper": paper,
        "timing": timing,
        "cost": cost,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
        "files": [
            [label, assets.link(Path(path))]
            for label, path in (("comparison table (CSV)", comparison_csv), ("AR histograms (PNG)", ar_png))
            if path
        ],
    }
    for name in STATIC_FILES:
        src = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        write_text(assets_dir / name, src)
    if comparison_csv:
        write_table_csv(comparison, comparison_csv)
    if ar_png:
        ar_distribution_png(runs, ar_png)
    write_text(out_html, render_html(data, title))  # last: the page exists only once its assets do
    log.info(
        "report: %s (%d runs, %d neurons, %.1f MB of thumbnails)",
        out_html,
        len(runs),
        sum(len(r["neurons"]) for r in runs),
        assets.bytes / 1e6,
    )
    return data
