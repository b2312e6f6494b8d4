"""The final report: one static, offline HTML page over everything the stages wrote.

``build_report`` reads the result tree of every (model, probe, concept set) by the workflow's path scheme
(every file but the selection summary is optional, so a run stopped after Select still gets a report),
writes web-sized JPEG thumbnails into ``assets/`` and one ``index.html`` whose data is a JSON blob that
``report.js`` renders: the neuron table is paged, cards are built only for the rows on screen and their
images load lazily, so 2,048 neurons stay usable.

Concept text is untrusted. The page never parses data as HTML (``report.js`` builds the DOM with
``textContent``), and the JSON blob is escaped so that no ``</script>`` or ``<!--`` can end the element
that holds it (:func:`embed_json`).
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

from ..images import open_rgb
from ..io import _jsonable, atomic_path, read_json, write_text
from ..paths import STAGE_ABLATIONS, SWEEPS

log = logging.getLogger(__name__)

GRID_MAX_SIZE = 960  # px, longest side of a neuron's top-image grid (hypothesize draws them ~1,100 px wide)
GENERATED_MAX_SIZE = 160  # px, longest side of a generated-image thumbnail
JPEG_QUALITY = 75
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
METHOD_DIRS = {"sieve": "", "clip_dissect": "baselines/clip_dissect"}
STATIC_FILES = ("report.js", "report.css")
BENCHMARK_GROUPS = (SWEEPS, STAGE_ABLATIONS)  # benchmarks/{group}/...: not the run's own stages
# Run summary: the settings each embedder / generator source uses (besides "source" and the common ones).
DEFAULT_SOURCE = {"generator": "diffusers"}
COMMON_SETTINGS = {
    "embedder": ("batch_size",),
    "generator": ("images_per_concept", "prompt", "batch_size", "shards", "seed", "keep_images", "thumbnail_size"),
}
SOURCE_SETTINGS = {
    "embedder": {"open_clip": ("arch", "pretrained", "model_config"), "python": ("factory", "kwargs"),
                 "synthetic": ("spec",)},
    "generator": {"diffusers": ("model", "kwargs", "steps", "guidance_scale", "resolution", "dtype"),
                  "python": ("factory", "kwargs"), "synthetic": ("spec",)},
}


class ReportError(ValueError):
    """A result file the report reads is malformed: the message names the file and the problem."""


# --------------------------------------------------------------------------------------------- escaping
_SCRIPT_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def embed_json(data: Any) -> str:
    """Strict JSON that is safe inside ``<script type="application/json">``.

    ``<``, ``>`` and ``&`` are written as ``\\u003c`` etc. (still the same JSON string values), so a
    concept such as ``</script><script>alert(1)</script>`` cannot close the element or open a comment.
    """
    text = json.dumps(_jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _SCRIPT_ESCAPES[m.group(0)], text)


def render_html(data: dict[str, Any], title: str) -> str:
    """The page: the packaged template with the (escaped) title and data blob filled in."""
    template = resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8")
    return template.replace("{{TITLE}}", html.escape(title, quote=True)).replace("{{DATA}}", embed_json(data))


# ----------------------------------------------------------------------------------------------- images
def make_thumbnail(src: str | Path, dst: str | Path, max_size: int, quality: int = JPEG_QUALITY) -> tuple[int, int]:
    """Re-encode ``src`` as a JPEG whose longest side is at most ``max_size``; returns (width, height)."""
    try:
        img = open_rgb(src, background=(255, 255, 255))
        img.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        with atomic_path(dst, suffix=".jpg") as tmp:
            img.save(tmp, "JPEG", quality=quality, optimize=True)
        return img.size
    except OSError as exc:
        raise ReportError(f"cannot read image {src}: {exc}") from exc


# ------------------------------------------------------------------------------------------------ files
def _read_json(path: Path) -> Any:
    try:
        return read_json(path)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from exc


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _num(value: Any, where: str) -> float | None:
    """A number from JSON/CSV: '', None and 'nan' give None; 'inf' gives inf; anything else must parse."""
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"{where}: {value!r} is not a number") from None
    return None if math.isnan(x) else x


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "t")
    return bool(value)


def _round(x: float | None, digits: int = 4) -> float | str | None:
    if x is None:
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return round(x, digits)


def _as_list(obj: Any, id_key: str) -> list[dict[str, Any]]:
    """Clusters may be written as a list of objects or as a mapping id -> object / id -> concept list."""
    if obj is None:
        return []
    if isinstance(obj, dict):
        out = []
        for key, value in obj.items():
            item = dict(value) if isinstance(value, dict) else {"concepts": value}
            item.setdefault(id_key, key)
            out.append(item)
        return out
    if isinstance(obj, list):
        return [dict(v) if isinstance(v, dict) else {"concepts": v} for v in obj]
    raise ReportError(f"expected a list or a mapping of clusters, got {type(obj).__name__}")


def _cluster_id(item: dict[str, Any], fallback: int) -> str:
    for key in ("cluster", "id", "label"):
        if key in item and item[key] is not None:
            return str(item[key])
    return str(fallback)


def _concept_id(c: dict[str, Any]) -> str:
    return str(c.get("id", c.get("concept_id", "")))


def _concept_text(c: dict[str, Any]) -> str:
    return str(c.get("text", c.get("concept", "")))


# ------------------------------------------------------------------------------------------- benchmarks
def read_benchmarks(bench_dir: str | Path) -> dict[str, Any]:
    """Wall time per stage from the rules' ``benchmark:`` files (column ``s``), as a table.

    A stage is the benchmark file's name with a trailing number (a shard, a swept tau) removed
    (``generate_shard_3`` -> ``generate_shard``, ``tau_0.5`` -> ``tau``), prefixed by ``sweeps/`` or
    ``stage_ablations/`` for the jobs of a sweep or a stage ablation, so that they do not count as the run's own
    stages; its jobs are summed (total) and the slowest is shown (max).
    """
    root = Path(bench_dir)
    stages: dict[str, list[float]] = {}
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        rows = _read_csv_tsv(path)
        secs = [_num(r.get("s"), f"{path} column s") for r in rows]
        secs = [s for s in secs if s is not None]
        if not secs:
            continue
        stages.setdefault(benchmark_stage(path.relative_to(root)), []).append(sum(secs) / len(secs))
    rows = [[stage, len(v), round(sum(v), 2), round(max(v), 2)] for stage, v in stages.items()]
    rows.sort(key=lambda r: -r[2])
    total = round(sum(r[2] for r in rows), 2)
    return {"title": "Wall time per stage", "columns": ["stage", "jobs", "total s", "max s"], "rows": rows,
            "total_s": total}


def benchmark_stage(rel: Path) -> str:
    """The stage of a benchmark file, from its path under ``benchmarks/`` (see :func:`read_benchmarks`)."""
    stage = rel.stem
    m = re.fullmatch(r"(.+?)[_.-]?(\d+(?:\.\d+)?(?:e[-+]?\d+)?)", stage)
    if m:
        stage = m.group(1)
    group = rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in BENCHMARK_GROUPS else ""
    return f"{group}/{stage}" if group else stage


def _read_csv_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


# ------------------------------------------------------------------------------------------ JSON tables
def json_table(obj: Any, title: str) -> dict[str, Any]:
    """Render any JSON value as a table: list of objects -> one row each; mapping of objects -> one row per
    key; mapping of scalars -> key/value rows; anything nested deeper is shown as compact JSON text."""

    def cell(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            return _round(v)
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
        return {"title": title, "columns": ["", *cols],
                "rows": [[k, *[cell(r.get(c)) for c in cols]] for k, r in obj.items()]}
    if isinstance(obj, dict):
        tables = [k for k, v in obj.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(tables) == 1:  # e.g. {"synthetic": true, "variants": [{...}, ...]}: the list is the table
            t = json_table(obj[tables[0]], title)
            t["note"] = "; ".join(f"{k} = {_fmt(v)}" for k, v in obj.items()
                                  if k != tables[0] and v is not None and not isinstance(v, (dict, list)))
            return t
        return {"title": title, "columns": ["key", "value"], "rows": [[k, cell(v)] for k, v in obj.items()]}
    return {"title": title, "columns": ["value"], "rows": [[cell(obj)]]}


# ----------------------------------------------------------------------------------------- the builder
class _Assets:
    """Writes thumbnails under ``assets/`` once each and returns the page-relative URL."""

    def __init__(self, report_dir: Path, assets_dir: Path) -> None:
        self.report_dir = report_dir
        self.assets_dir = assets_dir
        self.done: dict[str, str] = {}
        self.bytes = 0

    def _url(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.report_dir)).as_posix()

    def thumbnail(self, src: Path, rel: str, max_size: int) -> str:
        if rel not in self.done:
            dst = self.assets_dir / rel
            make_thumbnail(src, dst, max_size)
            self.bytes += dst.stat().st_size
            self.done[rel] = self._url(dst)
        return self.done[rel]

    def copy(self, src: Path, rel: str) -> str:
        if rel not in self.done:
            dst = self.assets_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            self.bytes += dst.stat().st_size
            self.done[rel] = self._url(dst)
        return self.done[rel]


def read_generated(path: Path, workdir: Path) -> dict[str, list[Path]]:
    """Verify's ``generated.json`` (concept id -> kept thumbnails, or full images) as concept id -> files.

    Relative paths in it are relative to the workflow's working directory ``workdir``."""
    doc = _read_json(path)
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a mapping concept id -> generated images")
    out = {}
    for cid, rec in doc.items():
        files = (rec.get("thumbs") or rec.get("images") or []) if isinstance(rec, dict) else []
        out[str(cid)] = [p if p.is_absolute() else workdir / p for p in map(Path, files)]
    return out


def _read_ar(path: Path, verify_summary: dict[str, Any] | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """ar.csv -> (neuron, cluster, concept_id or text) -> {ar, n_images, n_active, kept}."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    mean = _num((verify_summary or {}).get("mean_ar_initial"), f"{path.parent / 'summary.json'} mean_ar_initial")
    rows = _read_csv(path)
    if rows and not {"neuron", "ar"} <= set(rows[0]):
        raise ReportError(f"{path}: needs columns neuron and ar, has {', '.join(rows[0])}")
    for i, r in enumerate(rows):
        where = f"{path} row {i + 2}"
        ar = _num(r.get("ar"), where + " column ar")
        if "kept" in r and r["kept"] != "":
            kept = _bool(r["kept"])
        else:
            kept = ar is not None and mean is not None and ar >= mean
        key_c = r.get("concept_id") or r.get("concept", "")
        out[(str(r["neuron"]), str(r.get("cluster", "")), key_c)] = {
            "ar": ar, "n_images": r.get("n_images"), "n_active": r.get("n_active"), "kept": kept,
            "text": r.get("concept", ""),
        }
    return out


def _method_result(base: Path, workdir: Path, n_gen: int, assets: _Assets) -> dict[str, Any] | None:
    """Hypotheses + AR of one method (sieve, or a baseline) for one (model, probe, concept set)."""
    hyp_dir = base / "hypotheses"
    ar_path = base / "verify" / "ar.csv"
    if not hyp_dir.is_dir() and not ar_path.is_file():
        return None
    summary_path = base / "verify" / "summary.json"
    vsum = _read_json(summary_path) if summary_path.is_file() else None
    ar = _read_ar(ar_path, vsum) if ar_path.is_file() else {}
    gen_path = base / "verify" / "generated.json"
    generated = read_generated(gen_path, workdir) if gen_path.is_file() and n_gen > 0 else {}
    per_neuron: dict[str, list[dict[str, Any]]] = {}
    used: set[tuple[str, str, str]] = set()
    if hyp_dir.is_dir():
        for f in sorted(hyp_dir.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            n = f.stem
            doc = _read_json(f)
            raw = doc.get("clusters", doc) if isinstance(doc, dict) else doc
            try:
                items = _as_list(raw, "cluster")
            except ReportError as exc:
                raise ReportError(f"{f}: {exc}") from None
            clusters = []
            for j, item in enumerate(items):
                cid = _cluster_id(item, j)
                concepts = []
                for c in item.get("concepts", []) or []:
                    if not isinstance(c, dict):
                        c = {"text": str(c)}
                    key = (n, cid, _concept_id(c) or _concept_text(c))
                    used.add(key)
                    concepts.append(_hypothesis(c, ar.get(key), generated, n_gen, assets))
                clusters.append({"id": cid, "concepts": concepts})
            per_neuron[n] = clusters
    # AR rows without a hypothesis file (e.g. a Verify-only baseline) still show up.
    for key, row in ar.items():
        if key in used:
            continue
        n, cid, ckey = key
        clusters = per_neuron.setdefault(n, [])
        cl = next((c for c in clusters if c["id"] == cid), None)
        if cl is None:
            cl = {"id": cid, "concepts": []}
            clusters.append(cl)
        cl["concepts"].append(_hypothesis({"id": ckey if ckey != row["text"] else "", "text": row["text"]},
                                          row, generated, n_gen, assets))
    ar_values = [r["ar"] for r in ar.values() if r["ar"] is not None]
    return {"clusters": per_neuron, "summary": vsum, "ar_values": [round(a, 4) for a in ar_values],
            "verified": bool(ar)}


def _hypothesis(c: dict[str, Any], ar: dict[str, Any] | None, generated: dict[str, list[Path]], n_gen: int,
                assets: _Assets) -> dict[str, Any]:
    cid = _concept_id(c)
    out: dict[str, Any] = {"id": cid, "text": _concept_text(c), "score": _round(_num(c.get("score"), "score"))}
    if ar is not None:
        out.update(ar=_round(ar["ar"]), n_images=ar["n_images"], n_active=ar["n_active"], kept=ar["kept"])
    if cid and re.fullmatch(r"[A-Za-z0-9_-]+", cid):  # ids are hashes: safe as a file name; text never is
        files = [p for p in generated.get(cid, []) if p.is_file()][:n_gen]
        out["generated"] = [assets.thumbnail(p, f"generated/{cid}/{i}.jpg", GENERATED_MAX_SIZE)
                            for i, p in enumerate(files)]
    return out


def _verified(clusters: list[dict[str, Any]]) -> list[list[Any]]:
    """[[text, ar], ...] of kept hypotheses, best first (a concept kept in two clusters appears once)."""
    best: dict[str, float] = {}
    for cl in clusters:
        for c in cl["concepts"]:
            if c.get("kept"):
                ar = c.get("ar") or 0.0
                best[c["text"]] = max(best.get(c["text"], -1.0), ar)
    return [[t, a] for t, a in sorted(best.items(), key=lambda kv: -kv[1])]


def _best_ar(clusters: list[dict[str, Any]]) -> float | None:
    ars = [c["ar"] for cl in clusters for c in cl["concepts"] if isinstance(c.get("ar"), (int, float))]
    return max(ars) if ars else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def collect_run(results: Path, model: str, probe: str, concept_set: str, assets: _Assets,
                n_gen: int = 4, workdir: Path | None = None) -> dict[str, Any]:
    """Everything the page shows for one (model, probe, concept set)."""
    mp = results / model / probe
    sel_path = mp / "select" / "summary.json"
    if not sel_path.is_file():
        raise ReportError(f"missing selection summary {sel_path} (run the select stage first)")
    sel = _read_json(sel_path)
    for key in ("tau", "neurons"):
        if key not in sel:
            raise ReportError(f"{sel_path}: no '{key}'")
    run_dir = mp / concept_set
    asset_prefix = f"{model}/{probe}"
    hist = mp / "select" / "ratio_histogram.png"
    histogram = assets.copy(hist, f"{asset_prefix}/ratio_histogram.png") if hist.is_file() else None

    methods: dict[str, dict[str, Any]] = {}
    for method, sub in METHOD_DIRS.items():
        res = _method_result(run_dir / sub if sub else run_dir, workdir or results.parent, n_gen, assets)
        if res is not None:
            methods[method] = res
    main = methods.get("sieve")
    baseline_names = [m for m in methods if m != "sieve"]

    truth: dict[str, dict[str, str]] = {}
    truth_path = run_dir / "truth.csv"
    if truth_path.is_file():
        for r in _read_csv(truth_path):
            if "neuron" not in r:
                raise ReportError(f"{truth_path}: needs a 'neuron' column")
            truth[str(r["neuron"])] = {k: _display(v or "") for k, v in r.items() if k != "neuron"}

    neurons = []
    cards: dict[str, Any] = {}
    for nid, info in sorted(sel["neurons"].items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
        where = f"{sel_path} neuron {nid}"
        ratio = _num(info.get("ratio"), where + " ratio")
        selected = _bool(info.get("selected"))
        dead = _bool(info.get("dead"))
        clusters = main["clusters"].get(nid, []) if main else []
        verified = _verified(clusters)
        if dead:
            status = "dead"
        elif not selected:
            status = "rejected"
        elif main and main["verified"]:
            status = "verified" if verified else "unverified"
        else:
            status = "selected"
        row: dict[str, Any] = {"id": nid, "ratio": _round(ratio), "selected": selected, "status": status,
                               "k": None, "verified": verified, "best_ar": _round(_best_ar(clusters))}
        if truth:
            t = truth.get(nid, {})
            row["truth"] = next((t[k] for k in ("planted_concepts", "planted", "concepts") if t.get(k)), "")
        for b in baseline_names:
            row.setdefault("baselines", {})[b] = _verified(methods[b]["clusters"].get(nid, []))
        if selected:
            card = _card(mp, run_dir, nid, info, clusters, assets, asset_prefix)
            row["k"] = len(card["clusters"]) or None
            for b in baseline_names:
                card.setdefault("baselines", {})[b] = methods[b]["clusters"].get(nid, [])
            if nid in truth:
                card["truth"] = [[k, v] for k, v in truth[nid].items()]
            cards[nid] = card
        neurons.append(row)

    tables = []
    ts_path = run_dir / "truth_summary.json"
    if ts_path.is_file():
        tables += _truth_tables(_read_json(ts_path))
    tables += extra_tables(run_dir, results / STAGE_ABLATIONS / model / probe / concept_set)

    facts = [["model", model], ["layer", sel.get("layer", "")], ["probe", probe],
             ["images", sel.get("n_images")], ["skipped images", sel.get("n_skipped", 0)],
             ["concept set", concept_set], ["tau", sel["tau"]], ["neurons in layer", sel.get("n_neurons", len(neurons))],
             ["selected", sel.get("n_selected", sum(r["selected"] for r in neurons))]]
    if sel.get("n_dead") is not None:
        facts.append(["dead", sel["n_dead"]])
    if main and main["summary"]:
        vs = main["summary"]
        facts += [["hypotheses", vs.get("n_hypotheses")], ["verified neurons", vs.get("n_verified")],
                  ["mean AR initial", _round(_num(vs.get("mean_ar_initial"), "mean_ar_initial"))],
                  ["hypotheses kept", vs.get("n_kept")],
                  ["mean AR kept", _round(_num(vs.get("mean_ar_kept"), "mean_ar_kept"))]]
    return {
        "key": f"{model} / {probe} / {concept_set}", "model": model, "probe": probe, "concept_set": concept_set,
        "layer": sel.get("layer", ""), "tau": sel["tau"], "facts": facts, "histogram": histogram,
        "ar": {m: {"values": r["ar_values"], "mean_initial": _round(_num((r["summary"] or {}).get("mean_ar_initial"), "mean_ar_initial")),
                   "mean_kept": _round(_num((r["summary"] or {}).get("mean_ar_kept"), "mean_ar_kept"))}
               for m, r in methods.items() if r["ar_values"]},
        "methods": list(methods), "baselines": baseline_names, "has_truth": bool(truth), "tables": tables,
        "neurons": neurons, "cards": cards,
        "_summaries": {m: r["summary"] for m, r in methods.items()}, "_select": sel,
        "_truth_summary": _read_json(ts_path) if ts_path.is_file() else None,
    }


def _truth_tables(ts: Any) -> list[dict[str, Any]]:
    """truth_summary.json: a per-kind table and the overall numbers (nested mappings flattened a.b)."""
    if not isinstance(ts, dict):
        return [json_table(ts, "Planted truth")]
    out = []
    kinds_key = next((k for k in ("kinds", "per_kind", "by_kind") if isinstance(ts.get(k), dict)), None)
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


def _display(value: str) -> str:
    """A CSV cell that holds a JSON list (truth.csv's concept lists) as plain comma-separated text."""
    if value.startswith("["):
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(items, list):
            return ", ".join(map(str, items))
    return value


def extra_tables(run_dir: Path, ablation_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every other JSON table of a run (final-layer metrics, sweeps, the ablation table): rendered generically.

    Read: ``{run}/*.json`` (but truth_summary.json), ``{run}/{evaluate,ablations,sweeps}/*.json`` and
    ``results/stage_ablations/{model}/{probe}/{concept_set}/*.json`` (``ablation_dir``)."""
    known = {"truth_summary.json"}
    files = [(p, run_dir) for p in sorted(run_dir.glob("*.json")) if p.name not in known]
    for sub in ("evaluate", "ablations", "sweeps"):
        files += [(p, run_dir) for p in sorted((run_dir / sub).glob("*.json"))] if (run_dir / sub).is_dir() else []
    if ablation_dir is not None and ablation_dir.is_dir():
        files += [(p, ablation_dir) for p in sorted(ablation_dir.glob("*.json"))]
    out = []
    for p, base in files:
        title = p.relative_to(base).with_suffix("").as_posix().replace("_", " ")
        out.append(json_table(_read_json(p), title))
    return out


def _card(mp: Path, run_dir: Path, nid: str, info: dict[str, Any], clusters: list[dict[str, Any]],
          assets: _Assets, prefix: str) -> dict[str, Any]:
    card: dict[str, Any] = {
        "p99": _round(_num(info.get("p99"), "p99")), "median": _round(_num(info.get("median"), "median")),
        "threshold": _round(_num(info.get("threshold"), "threshold")), "grid": None, "clusters": [],
        "dropped": [], "silhouette": None,
    }
    grid = mp / "grids" / f"{nid}.png"
    if not grid.is_file():
        grid = next((g for g in (mp / "grids").glob(f"{nid}.*") if g.suffix.lower() in IMAGE_SUFFIXES), grid) \
            if (mp / "grids").is_dir() else grid
    if grid.is_file():
        card["grid"] = assets.thumbnail(grid, f"{prefix}/grids/{nid}.jpg", GRID_MAX_SIZE)
    ablation = mp / "ablation" / f"{nid}.png"  # evaluate.ablate_neurons: per-class accuracy drop
    if ablation.is_file():
        card["ablation"] = assets.thumbnail(ablation, f"{prefix}/ablation/{nid}.jpg", GRID_MAX_SIZE)
    members: dict[str, Any] = {}
    cl_path = mp / "clusters" / f"{nid}.json"
    if cl_path.is_file():
        doc = _read_json(cl_path)
        try:
            items = _as_list(doc.get("clusters"), "cluster") if isinstance(doc, dict) else []
        except ReportError as exc:
            raise ReportError(f"{cl_path}: {exc}") from None
        for j, item in enumerate(items):
            members[_cluster_id(item, j)] = item.get("members", item.get("ranks", []))
        card["dropped"] = doc.get("dropped", []) if isinstance(doc, dict) else []
        card["silhouette"] = _jsonable(doc.get("silhouette")) if isinstance(doc, dict) else None
    order = list(members) + [c["id"] for c in clusters if c["id"] not in members]
    by_id = {c["id"]: c for c in clusters}
    for cid in order:
        card["clusters"].append({"id": cid, "members": members.get(cid, []),
                                 "concepts": by_id.get(cid, {}).get("concepts", [])})
    return card


def comparison_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cols = ["model", "probe", "concept set", "method", "layer", "tau", "neurons", "selected", "hypotheses",
            "mean AR initial", "kept", "mean AR kept", "verified", "verified share"]
    with_truth = any(r["_truth_summary"] for r in runs)
    if with_truth:
        cols.append("recovery")
    rows = []
    for r in runs:
        sel = r["_select"]
        n_sel = sel.get("n_selected")
        for method in r["methods"] or ["sieve"]:
            vs = r["_summaries"].get(method) or {}
            n_ver = vs.get("n_verified")
            share = round(n_ver / n_sel, 4) if isinstance(n_ver, (int, float)) and n_sel else None
            row = [r["model"], r["probe"], r["concept_set"], method, r["layer"], sel.get("tau"),
                   sel.get("n_neurons"), n_sel, vs.get("n_hypotheses"),
                   _round(_num(vs.get("mean_ar_initial"), "mean_ar_initial")), vs.get("n_kept"),
                   _round(_num(vs.get("mean_ar_kept"), "mean_ar_kept")), n_ver, share]
            if with_truth:
                ts = r["_truth_summary"] or {}
                rec = ts.get("recovery") if method == "sieve" else (ts.get(method) or {}).get("recovery") \
                    if isinstance(ts.get(method), dict) else None
                row.append(_round(_num(rec, "recovery")))
            rows.append(row)
    return {"title": "Comparison", "columns": cols, "rows": rows}


def settings_tables(settings: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The run summary: models, probes, concept sets and the stage settings (from the rule's params)."""
    out = []
    layers = {r["model"]: r["layer"] for r in runs}
    models = settings.get("models") or {}
    if models:
        out.append({"title": "Models", "columns": ["name", "source", "architecture", "layer"],
                    "rows": [[n, s.get("source"), s.get("arch", s.get("factory", "")), layers.get(n) or s.get("layer", "")]
                             for n, s in models.items()]})
    probes = settings.get("probes") or {}
    if probes:
        sel = {r["probe"]: r["_select"] for r in runs}
        out.append({"title": "Probe sets", "columns": ["name", "kind", "images", "skipped"],
                    "rows": [[n, s.get("kind"), sel.get(n, {}).get("n_images"), sel.get(n, {}).get("n_skipped")]
                             for n, s in probes.items()]})
    csets = settings.get("concept_sets") or {}
    if csets:
        out.append({"title": "Concept sets", "columns": ["name", "source", "concepts"],
                    "rows": [[n, s.get("path") or s.get("url") or f"synthetic: {s.get('synthetic')}",
                              settings.get("concept_counts", {}).get(n)] for n, s in csets.items()]})
    for key in ("select", "embedder", "hypothesize", "generator", "verify"):
        if settings.get(key):
            shown, note = applicable_settings(key, settings[key])
            table = {"title": key.capitalize(), "columns": ["setting", "value"],
                     "rows": [[k, _setting_cell(v)] for k, v in shown.items()]}
            if note:
                table["note"] = note
            out.append(table)
    return out


def _setting_cell(v: Any) -> Any:
    return v if isinstance(v, (str, int, float, bool)) or v is None else json.dumps(_jsonable(v), ensure_ascii=False)


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
        passed = [f"{k} = {_setting_cell(spec[k])}" for k in ("resolution", "dtype") if k in spec]
        piped = [f"{k} = {_setting_cell(spec[k])}" for k in ("steps", "guidance_scale") if k in spec]
        note = "; ".join(filter(None, [
            "passed to the factory where its signature takes them: " + ", ".join(passed) if passed else "",
            "used only if it returns a diffusers pipeline: " + ", ".join(piped) if piped else ""]))
    return shown, note


def count_concepts(results: Path, concept_sets: Iterable[str]) -> dict[str, int]:
    out = {}
    for cs in concept_sets:
        p = results / "concepts" / cs / "concepts.json"
        if p.is_file():
            doc = _read_json(p)
            items = doc.get("concepts", doc) if isinstance(doc, dict) else doc
            if isinstance(items, (list, dict)):
                out[cs] = len(items)
    return out


def ar_distribution_png(runs: list[dict[str, Any]], out_png: str | Path) -> None:
    """One histogram of AR per (model, probe, concept set, method), with the initial and kept means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r["key"], m, a) for r in runs for m, a in r["ar"].items()]
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(6, 2.4 * max(len(panels), 1)), dpi=110,
                             squeeze=False)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no Verify results (no ar.csv)", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, (key, method, a) in zip(axes[:, 0], panels, strict=False):
        ax.hist(a["values"], bins=20, range=(0, 1), color="#4477aa")
        if a["mean_initial"] is not None:
            ax.axvline(a["mean_initial"], color="#cc3311", ls="--", label=f"mean initial {a['mean_initial']:.2f}")
        if a["mean_kept"] is not None:
            ax.axvline(a["mean_kept"], color="#228833", ls=":", label=f"mean kept {a['mean_kept']:.2f}")
        ax.set_title(f"{key} ({method})", fontsize=9)
        ax.set_xlabel("Activation Rate")
        ax.set_ylabel("hypotheses")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp)
    plt.close(fig)


def write_table_csv(table: dict[str, Any], out_csv: str | Path) -> None:
    with atomic_path(out_csv) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(table["columns"])
            w.writerows(table["rows"])


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
    assets = _Assets(report_dir, assets_dir)
    results = Path(results)
    workdir = Path(workdir) if workdir is not None else results.parent
    runs = [collect_run(results, m, p, cs, assets, generated_per_concept, workdir)
            for m in models for p in probes for cs in concept_sets]
    settings = dict(settings or {})
    settings["concept_counts"] = count_concepts(results, concept_sets)
    comparison = comparison_table(runs)
    timing = read_benchmarks(benchmarks)
    data = {
        "title": title,
        "settings": settings_tables(settings, runs),
        "comparison": comparison,
        "timing": timing,
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
    }
    for name in STATIC_FILES:
        src = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
        write_text(assets_dir / name, src)
    if comparison_csv:
        write_table_csv(comparison, comparison_csv)
    if ar_png:
        ar_distribution_png(runs, ar_png)
    write_text(out_html, render_html(data, title))  # last: the page exists only once its assets do
    log.info("report: %s (%d runs, %d neurons, %.1f MB of thumbnails)", out_html, len(runs),
             sum(len(r["neurons"]) for r in runs), assets.bytes / 1e6)
    return data
