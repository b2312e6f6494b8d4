"""The report's tables: any JSON result as a table, wall times, the comparison of every run and method, the
run summary (settings), the AR histogram, and the CSV copy of the comparison."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..evaluate.truth import KINDS_KEY, RECOVERY_KEY
from ..io import _jsonable, atomic_path, write_csv
from ..paths import STAGE_ABLATIONS, SWEEPS, TRUTH_SUMMARY_FILE
from .values import as_number, load_json, load_tsv, rounded, short_text

BENCHMARK_GROUPS = (SWEEPS, STAGE_ABLATIONS)  # benchmarks/{group}/...: not the run's own stages
# Run summary: the settings each embedder / generator source uses (besides "source" and the common ones).
DEFAULT_SOURCE = {"generator": "diffusers"}
COMMON_SETTINGS = {
    "embedder": ("batch_size",),
    "generator": (
        "images_per_concept",
        "prompt",
        "batch_size",
        "shards",
        "seed",
        "keep_images",
        "thumbnail_size",
    ),
}
SOURCE_SETTINGS = {
    "embedder": {
        "open_clip": ("arch", "pretrained", "model_config"),
        "python": ("factory", "kwargs"),
        "synthetic": ("spec",),
    },
    "generator": {
        "diffusers": ("model", "kwargs", "steps", "guidance_scale", "resolution", "dtype"),
        "python": ("factory", "kwargs"),
        "synthetic": ("spec",),
    },
}


def read_benchmarks(bench_dir: str | Path) -> dict[str, Any]:
    """Wall time per stage from the rules' ``benchmark:`` files (column ``s``), as a table.

    A stage is the benchmark file's name with a trailing number (a shard, a swept tau) removed
    (``generate_shard_3`` -> ``generate_shard``, ``tau_0.5`` -> ``tau``), prefixed by ``sweeps/`` or
    ``stage_ablations/`` for the jobs of a sweep or a stage ablation, so that they do not count as the run's own stages;
    its jobs are summed (total) and the slowest is shown (max).
    """
    root = Path(bench_dir)
    stages: dict[str, list[float]] = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rows = load_tsv(path)
        secs = [as_number(r.get("s"), f"{path} column s") for r in rows]
        secs = [s for s in secs if s is not None]
        if not secs:
            continue
        stages.setdefault(benchmark_stage(path.relative_to(root)), []).append(sum(secs) / len(secs))
    rows = [[stage, len(v), round(sum(v), 2), round(max(v), 2)] for stage, v in stages.items()]
    rows.sort(key=lambda r: -r[2])
    total = round(sum(r[2] for r in rows), 2)
    return {
        "title": "Wall time per stage",
        "columns": ["stage", "jobs", "total s", "max s"],
        "rows": rows,
        "total_s": total,
    }


def benchmark_stage(rel: Path) -> str:
    """The stage of a benchmark file, from its path under ``benchmarks/`` (see :func:`read_benchmarks`)."""
    stage = rel.stem
    m = re.fullmatch(r"(.+?)[_.-]?(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", stage)
    if m:
        stage = m.group(1)
    group = rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in BENCHMARK_GROUPS else ""
    return f"{group}/{stage}" if group else stage


def json_table(obj: Any, title: str) -> dict[str, Any]:
    """Render any JSON value as a table: list of objects -> one row each; mapping of objects -> one row per
    key; mapping of scalars -> key/value rows; anything nested deeper is shown as compact JSON text."""

    def cell(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return rounded(v)
        return json.dumps(_jsonable(v), ensure_ascii=False, allow_nan=False)

    if isinstance(obj, list) and obj and all(isinstance(r, dict) for r in obj):
        cols: list[str] = []
        for r in obj:
            cols += [k for k in r if k not in cols]
        return {"title": title, "columns": cols, "rows": [[cell(r.get(c)) for c in cols] for r in obj]}
    if isinstance(obj, dict) and obj and all(isinstance(v, dict) for v in obj.values()):
        cols = []
        for r in obj.values():
            cols += [k for k in r if k not in cols]
        return {
            "title": title,
            "columns": ["", *cols],
            "rows": [[k, *[cell(r.get(c)) for c in cols]] for k, r in obj.items()],
        }
    if isinstance(obj, dict):
        tables = [
            k for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
        ]
        if len(tables) == 1:  # e.g. {"synthetic": true, "variants": [{...}, ...]}: the list is the table
            t = json_table(obj[tables[0]], title)
            t["note"] = "; ".join(
                f"{k} = {short_text(v)}"
                for k, v in obj.items()
                if k != tables[0] and v is not None and not isinstance(v, (dict, list))
            )
            return t
        return {"title": title, "columns": ["key", "value"], "rows": [[k, cell(v)] for k, v in obj.items()]}
    return {"title": title, "columns": ["value"], "rows": [[cell(obj)]]}


def truth_tables(ts: Any) -> list[dict[str, Any]]:
    """truth_summary.json: a per-kind table and the overall numbers (nested mappings flattened a.b)."""
    if not isinstance(ts, dict):
        return [json_table(ts, "Planted truth")]
    out = []
    kinds_key = KINDS_KEY if isinstance(ts.get(KINDS_KEY), dict) else None
    if kinds_key:
        out.append(json_table(ts[kinds_key], "Planted truth: per kind"))
    flat: dict[str, Any] = {}
    for k, v in ts.items():
        if k == kinds_key:
            continue
        if isinstance(v, dict):
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    out.append(json_table(flat, "Planted truth: overall"))
    return out


def extra_tables(
    run_dir: Path, stage_ablation_dir: Path | None = None, link: Callable[[Path], str] | None = None
) -> list[dict[str, Any]]:
    """Every other JSON table of a run (final-layer metrics, sweeps, the stage-ablation table), rendered
    generically.

    Read: ``{run}/*.json`` (but truth_summary.json), ``{run}/{evaluate,ablations,sweeps}/*.json`` and
    ``results/stage_ablations/{model}/{probe}/{concept_set}/*.json`` (``stage_ablation_dir``). With ``link`` (path ->
    the page's link to it), each table names its file (``source``)."""
    known = {TRUTH_SUMMARY_FILE}
    files = [(p, run_dir) for p in sorted(run_dir.glob("*.json")) if p.name not in known]
    for sub in ("evaluate", "ablations", "sweeps"):
        files += (
            [(p, run_dir) for p in sorted((run_dir / sub).glob("*.json"))] if (run_dir / sub).is_dir() else []
        )
    if stage_ablation_dir is not None and stage_ablation_dir.is_dir():
        files += [(p, stage_ablation_dir) for p in sorted(stage_ablation_dir.glob("*.json"))]
    out = []
    for p, base in files:
        title = p.relative_to(base).with_suffix("").as_posix().replace("_", " ")
        table = json_table(load_json(p), title)
        if link is not None:
            table["source"] = link(p)
        out.append(table)
    return out


# Verify's filters (sieve.verify.activation_rate.FILTERS; not imported: the report reads files, not numpy code)
FILTERS = ("paper", "specificity")


def comparison_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cols = [
        "model",
        "probe",
        "concept set",
        "method",
        "layer",
        "tau",
        "neurons",
        "selected",
        "hypotheses",
        "mean AR initial",
        "kept",
        "mean AR kept",
        "verified",
        "verified share",
    ]
    with_truth = any(r["_truth_summary"] for r in runs)
    if with_truth:
        cols.append("recovery")
    # both Verify filters side by side, whichever is active (summary.json's "filters", when Verify scored the
    # control pool)
    with_filters = any("filters" in (s or {}) for r in runs for s in r["_summaries"].values())
    if with_filters:
        cols += ["filter"] + [f"{what} ({f})" for what in ("kept", "verified") for f in FILTERS]
        if with_truth:
            cols += [f"wrong kept ({f})" for f in FILTERS]
    rows = []
    for r in runs:
        sel = r["_select"]
        n_sel = sel.get("n_selected")
        for method in r["methods"] or ["sieve"]:
            vs = r["_summaries"].get(method) or {}
            n_ver = vs.get("n_verified")
            share = round(n_ver / n_sel, 4) if isinstance(n_ver, (int, float)) and n_sel else None
            row = [
                r["model"],
                r["probe"],
                r["concept_set"],
                method,
                r["layer"],
                sel.get("tau"),
                sel.get("n_neurons"),
                n_sel,
                vs.get("n_hypotheses"),
                rounded(as_number(vs.get("mean_ar_initial"), "mean_ar_initial")),
                vs.get("n_kept"),
                rounded(as_number(vs.get("mean_ar_kept"), "mean_ar_kept")),
                n_ver,
                share,
            ]
            if with_truth:
                ts = r["_truth_summary"] or {}
                rec = (
                    ts.get(RECOVERY_KEY)
                    if method == "sieve"
                    else (ts.get(method) or {}).get(RECOVERY_KEY)
                    if isinstance(ts.get(method), dict)
                    else None
                )
                row.append(rounded(as_number(rec, "recovery")))
            if with_filters:
                filters = vs.get("filters") or {}
                row.append(vs.get("filter"))
                row += [
                    (filters.get(f) or {}).get(what) for what in ("n_kept", "n_verified") for f in FILTERS
                ]
                if with_truth:
                    ts = r["_truth_summary"] or {}
                    mt = ts if method == "sieve" else ts.get(method)
                    hyp = (mt.get("hypotheses") if isinstance(mt, dict) else None) or {}
                    row += [hyp.get(f"n_wrong_kept_{f}") for f in FILTERS]
            rows.append(row)
    return {"title": "Comparison", "columns": cols, "rows": rows}


def settings_tables(settings: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run summary: models, probes, concept sets and the stage settings (from the rule's params)."""
    out = []
    layers = {r["model"]: r["layer"] for r in runs}
    models = settings.get("models") or {}
    if models:
        out.append(
            {
                "title": "Models",
                "columns": ["name", "source", "architecture", "layer"],
                "rows": [
                    [
                        n,
                        s.get("source"),
                        s.get("arch", s.get("factory", "")),
                        layers.get(n) or s.get("layer", ""),
                    ]
                    for n, s in models.items()
                ],
            }
        )
    probes = settings.get("probes") or {}
    if probes:
        sel = {r["probe"]: r["_select"] for r in runs}
        out.append(
            {
                "title": "Probe sets",
                "columns": ["name", "kind", "images", "skipped"],
                "rows": [
                    [n, s.get("kind"), sel.get(n, {}).get("n_images"), sel.get(n, {}).get("n_skipped")]
                    for n, s in probes.items()
                ],
            }
        )
    csets = settings.get("concept_sets") or {}
    if csets:
        out.append(
            {
                "title": "Concept sets",
                "columns": ["name", "source", "concepts"],
                "rows": [
                    [
                        n,
                        s.get("path") or s.get("url") or f"synthetic: {s.get('synthetic')}",
                        settings.get("concept_counts", {}).get(n),
                    ]
                    for n, s in csets.items()
                ],
            }
        )
    for key in ("select", "embedder", "hypothesize", "generator", "verify"):
        if settings.get(key):
            shown, note = applicable_settings(key, settings[key])
            table = {
                "title": key.capitalize(),
                "columns": ["setting", "value"],
                "rows": [[k, setting_cell(v)] for k, v in shown.items()],
            }
            if note:
                table["note"] = note
            out.append(table)
    return out


def setting_cell(v: Any) -> Any:
    return (
        v
        if isinstance(v, (str, int, float, bool)) or v is None
        else json.dumps(_jsonable(v), ensure_ascii=False)
    )


def applicable_settings(section: str, spec: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The settings of config ``embedder:`` / ``generator:`` that its ``source`` uses (the schema fills in
    diffusers' model, steps, ... whatever the source), and a note on those a python factory may take.

    Other sections, and a source this table does not know, are shown whole."""
    by_source = SOURCE_SETTINGS.get(section)
    source = spec.get("source", DEFAULT_SOURCE.get(section))
    if by_source is None or source not in by_source:
        return dict(spec), ""
    keep = {"source", *COMMON_SETTINGS[section], *by_source[source]}
    shown = {k: v for k, v in spec.items() if k in keep}
    note = ""
    if section == "generator" and source == "python":
        passed = [f"{k} = {setting_cell(spec[k])}" for k in ("resolution", "dtype") if k in spec]
        piped = [f"{k} = {setting_cell(spec[k])}" for k in ("steps", "guidance_scale") if k in spec]
        note = "; ".join(
            filter(
                None,
                [
                    "passed to the factory where its signature takes them: " + ", ".join(passed)
                    if passed
                    else "",
                    "used only if it returns a diffusers pipeline: " + ", ".join(piped) if piped else "",
                ],
            )
        )
    return shown, note


def count_concepts(results: Path, concept_sets: Iterable[str]) -> dict[str, int]:
    out = {}
    for cs in concept_sets:
        p = results / "concepts" / cs / "concepts.json"
        if p.is_file():
            doc = load_json(p)
            items = doc.get("concepts", doc) if isinstance(doc, dict) else doc
            if isinstance(items, (list, dict)):
                out[cs] = len(items)
    return out


def ar_figure(runs: list[dict[str, Any]]) -> Any:
    """One histogram of AR per (model, probe, concept set, method), with the initial and kept means.

    Each panel has a y axis of hypothesis counts (integer ticks) and the legend to the right of the plot, so that
    no label covers a bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: its import is most of the report's (issue 14)
    from matplotlib.ticker import MaxNLocator

    panels = [(r["key"], m, a) for r in runs for m, a in r["ar"].items()]
    fig = Figure(figsize=(8, 2.6 * max(len(panels), 1)), dpi=110)
    FigureCanvasAgg(fig)  # what pyplot's Agg backend gives it
    axes = fig.subplots(max(len(panels), 1), 1, squeeze=False)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no Verify results (no ar.csv)", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, (key, method, a) in zip(axes[:, 0], panels, strict=False):
        ax.hist(a["values"], bins=20, range=(0, 1), color="#4477aa", edgecolor="white", label="hypotheses")
        if a["mean_initial"] is not None:
            ax.axvline(
                a["mean_initial"], color="#cc3311", ls="--", label=f"mean initial {a['mean_initial']:.2f}"
            )
        if a["mean_kept"] is not None:
            ax.axvline(a["mean_kept"], color="#228833", ls=":", label=f"mean kept {a['mean_kept']:.2f}")
        ax.set_title(f"{key} ({method})", fontsize=9)
        ax.set_xlim(-0.02, 1.02)  # a mean of 0 or 1 stays visible beside the frame
        ax.set_xlabel("Activation Rate")
        ax.set_ylabel("hypotheses")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(y=0.1)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    return fig


def ar_distribution_png(runs: list[dict[str, Any]], out_png: str | Path) -> None:
    """``ar_distribution.png``: :func:`ar_figure`, written atomically."""
    fig = ar_figure(runs)
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp)


def write_table_csv(table: dict[str, Any], out_csv: str | Path) -> None:
    """A report table as CSV (``comparison.csv``), CRLF line ends as it has always had."""
    write_csv(out_csv, table["columns"], table["rows"], line_terminator="\r\n")
