"""One method's result (SIEVE's or a baseline's) for one model / probe / concept set: hypotheses, AR rows,
generated images and the neuron's activation on each of them, as the page shows them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import (
    AR_FILE,
    GENERATED_FILE,
    GENERATION_PLAN,
    GENERATION_SHARD,
    HYPOTHESES_DIR,
    VERIFY_SUMMARY_FILE,
)
from ..verify.activation_rate import index_manifests
from ..verify.cache import CacheDamage, load_acts
from ..verify.plan import PLAN_FILE, current_manifests
from .assets import Assets
from .values import (
    ReportError,
    as_bool,
    as_items,
    as_number,
    cluster_id,
    concept_id,
    concept_text,
    load_csv,
    load_json,
    rounded,
)

log = logging.getLogger(__name__)

GENERATED_MAX_SIZE = 160  # px, longest side of a generated-image thumbnail


def read_generated(path: Path, workdir: Path) -> dict[str, dict[str, Any]]:
    """Verify's ``generated.json`` as concept id -> {"seeds": [...], "files": [(seed, kept thumbnail or full
    image), ...]}, in seed order.

    Relative paths in it are relative to the workflow's working directory ``workdir``."""
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise ReportError(f"{path}: expected a mapping concept id -> generated images")
    out = {}
    for cid, rec in doc.items():
        rec = rec if isinstance(rec, dict) else {}
        files = [
            p if p.is_absolute() else workdir / p
            for p in map(Path, rec.get("thumbs") or rec.get("images") or [])
        ]
        seeds = list(rec.get("seeds") or range(len(files)))
        out[str(cid)] = {"seeds": seeds, "files": list(zip(seeds, files, strict=False))}
    return out


GeneratedActivations = Callable[[str, int], dict[int, float] | None]
"""(concept text, neuron) -> seed -> the neuron's pooled activation on that generated image, or None."""


def generation_manifests(results: Path, workdir: Path) -> list[Path]:
    """The current shard manifests of the run's generation plan (none before the plan has run)."""
    plan_dir = workdir / GENERATION_PLAN
    if not (plan_dir / PLAN_FILE).is_file():
        return []
    pattern = str(workdir / GENERATION_SHARD)
    return [p for p in map(Path, current_manifests(plan_dir, pattern)) if p.is_file()]


def generated_activations(results: Path, workdir: Path, model: str) -> GeneratedActivations:
    """The neuron's activation on each generated image of a concept, as Verify measured it.

    The one place where the report reads Verify's generation results beyond ``generated.json``: the current
    shard manifests (:func:`sieve.verify.plan.current_manifests`, the very files Verify's own AR step reads,
    through :func:`sieve.verify.activation_rate.index_manifests`) name each concept's activations file for
    ``model`` (``seeds`` [n], ``pooled`` [n, C]). Missing manifests or files give None: the page then shows the
    images without values."""
    manifests = generation_manifests(results, workdir)
    by_text = index_manifests(manifests) if manifests else {}
    loaded: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def values(text: str, neuron: int) -> dict[int, float] | None:
        rec = by_text.get(text)
        acts = (rec or {}).get("acts", {}).get(model) if isinstance(rec, dict) else None
        if (
            not isinstance(acts, str) or not acts
        ):  # another layout: no values (test_report_rule_end_to_end notices)
            return None
        if acts not in loaded:
            path = Path(acts) if Path(acts).is_absolute() else workdir / acts
            try:  # checksum-verified, like Verify's own reads; a damaged file shows no values, never wrong ones
                seeds, pooled = load_acts(path)
                loaded[acts] = (seeds, pooled.astype(np.float64))
            except CacheDamage as exc:
                log.warning("report: no activation values for %s", exc)
                loaded[acts] = None
        got = loaded[acts]
        if got is None or not 0 <= neuron < got[1].shape[1]:
            return None
        return {int(s): float(v) for s, v in zip(got[0], got[1][:, neuron], strict=True)}

    return values


def read_ar(path: Path, verify_summary: dict[str, Any] | None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """ar.csv -> (neuron, cluster, concept_id or text) -> {ar, n_images, n_active, kept}."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    mean = as_number(
        (verify_summary or {}).get("mean_ar_initial"), f"{path.parent / 'summary.json'} mean_ar_initial"
    )
    rows = load_csv(path)
    if rows and not {"neuron", "ar"} <= set(rows[0]):
        raise ReportError(f"{path}: needs columns neuron and ar, has {', '.join(rows[0])}")
    for i, r in enumerate(rows):
        where = f"{path} row {i + 2}"
        ar = as_number(r.get("ar"), where + " column ar")
        if "kept" in r and r["kept"] != "":
            kept = as_bool(r["kept"])
        else:
            kept = ar is not None and mean is not None and ar >= mean
        key_c = r.get("concept_id") or r.get("concept", "")
        entry = {
            "ar": ar,
            "n_images": r.get("n_images"),
            "n_active": r.get("n_active"),
            "kept": kept,
            "text": r.get("concept", ""),
        }
        # Verify's control-pool scores (empty cells, or an ar.csv from before them, give none)
        for col in CONTROL_COLUMNS:
            value = as_number(r.get(col), f"{where} column {col}")
            if value is not None:
                entry[col] = value
        for col in FILTER_COLUMNS:
            if r.get(col) not in (None, ""):
                entry[col] = as_bool(r[col])
        out[(str(r["neuron"]), str(r.get("cluster", "")), key_c)] = entry
    return out


# ar.csv's columns of the scores against the control pool, and of the two filters (sieve.verify.activation_rate)
CONTROL_COLUMNS = ("ar_low", "ar_high", "control_rate", "auc", "f1")
FILTER_COLUMNS = ("kept_paper", "kept_specificity")


def control_points(ar: dict[tuple[str, str, str], dict[str, Any]]) -> list[list[Any]]:
    """[ar, control_rate, kept, neuron, concept] of every hypothesis with a control rate: the points of the
    AR-versus-control-rate scatter."""
    return [
        [round(r["ar"], 4), round(r["control_rate"], 4), int(bool(r["kept"])), key[0], r["text"]]
        for key, r in ar.items()
        if r["ar"] is not None and r.get("control_rate") is not None
    ]


def method_result(
    base: Path,
    workdir: Path,
    n_gen: int,
    assets: Assets,
    gen_acts: GeneratedActivations | None = None,
    thresholds: dict[str, float] | None = None,
) -> dict[str, Any] | None:
    """Hypotheses + AR of one method (sieve, or a baseline) for one (model, probe, concept set); with ``gen_acts``
    and the neurons' ``thresholds``, each hypothesis also gets the activation of every generated image."""
    hyp_dir = base / HYPOTHESES_DIR
    ar_path = base / AR_FILE
    if not hyp_dir.is_dir() and not ar_path.is_file():
        return None
    summary_path = base / VERIFY_SUMMARY_FILE
    vsum = load_json(summary_path) if summary_path.is_file() else None
    ar = read_ar(ar_path, vsum) if ar_path.is_file() else {}
    gen_path = base / GENERATED_FILE
    generated = read_generated(gen_path, workdir) if gen_path.is_file() and n_gen > 0 else {}
    per_neuron: dict[str, list[dict[str, Any]]] = {}
    used: set[tuple[str, str, str]] = set()
    if hyp_dir.is_dir():
        for f in sorted(hyp_dir.glob("*.json"), key=lambda p: (len(p.stem), p.stem)):
            n = f.stem
            doc = load_json(f)
            raw = doc.get("clusters", doc) if isinstance(doc, dict) else doc
            try:
                items = as_items(raw, "cluster")
            except ReportError as exc:
                raise ReportError(f"{f}: {exc}") from None
            clusters = []
            for j, item in enumerate(items):
                cid = cluster_id(item, j)
                concepts = []
                for c in item.get("concepts", []) or []:
                    if not isinstance(c, dict):
                        c = {"text": str(c)}
                    key = (n, cid, concept_id(c) or concept_text(c))
                    used.add(key)
                    entry = hypothesis_entry(c, ar.get(key), generated, n_gen, assets)
                    concepts.append(with_activations(entry, gen_acts, n, generated, thresholds))
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
        entry = hypothesis_entry(
            {"id": ckey if ckey != row["text"] else "", "text": row["text"]}, row, generated, n_gen, assets
        )
        cl["concepts"].append(with_activations(entry, gen_acts, n, generated, thresholds))
    ar_values = [r["ar"] for r in ar.values() if r["ar"] is not None]
    return {
        "clusters": per_neuron,
        "summary": vsum,
        "ar_values": [round(a, 4) for a in ar_values],
        "control_points": control_points(ar),
        "verified": bool(ar),
    }


def hypothesis_entry(
    c: dict[str, Any],
    ar: dict[str, Any] | None,
    generated: dict[str, dict[str, Any]],
    n_gen: int,
    assets: Assets,
) -> dict[str, Any]:
    """One hypothesis as the card shows it: text, CLIP score, AR and verdict, and the first ``n_gen`` generated
    images (``generated`` their seeds, in the same order as ``gen_seeds``)."""
    cid = concept_id(c)
    out: dict[str, Any] = {
        "id": cid,
        "text": concept_text(c),
        "score": rounded(as_number(c.get("score"), "score")),
    }
    if ar is not None:
        out.update(ar=rounded(ar["ar"]), n_images=ar["n_images"], n_active=ar["n_active"], kept=ar["kept"])
        out.update({k: rounded(ar[k]) for k in CONTROL_COLUMNS if k in ar})
        out.update({k: ar[k] for k in FILTER_COLUMNS if k in ar})
    if cid and re.fullmatch(r"[A-Za-z0-9_-]+", cid):  # ids are hashes: safe as a file name; text never is
        files = [(s, p) for s, p in generated.get(cid, {}).get("files", []) if p.is_file()][:n_gen]
        out["generated"] = [
            assets.thumbnail(p, f"generated/{cid}/{i}.jpg", GENERATED_MAX_SIZE)
            for i, (_, p) in enumerate(files)
        ]
        out["gen_seeds"] = [int(s) for s, _ in files]
    return out


def with_activations(
    entry: dict[str, Any],
    gen_acts: GeneratedActivations | None,
    neuron: str,
    generated: dict[str, dict[str, Any]],
    thresholds: dict[str, float] | None,
) -> dict[str, Any]:
    """Add the neuron's activation on each of the concept's generated images (``acts``, in seed order, as Verify
    measured them) and whether it fired (``fired``: 1 when above the neuron's threshold, as the AR counts it), and
    the same for the thumbnails shown (``gen_acts``, ``gen_fired``)."""
    threshold = (thresholds or {}).get(neuron)
    if gen_acts is None or threshold is None or not neuron.isdigit():
        return entry
    values = gen_acts(entry["text"], int(neuron))
    if values is None:
        return entry
    seeds = generated.get(entry["id"], {}).get("seeds") or sorted(values)
    seeds = [int(s) for s in seeds if int(s) in values]
    entry["acts"] = [rounded(values[s]) for s in seeds]
    entry["fired"] = [int(values[s] > threshold) for s in seeds]
    shown = entry.get("gen_seeds", [])
    entry["gen_acts"] = [rounded(values[s]) if s in values else None for s in shown]
    entry["gen_fired"] = [int(values[s] > threshold) if s in values else None for s in shown]
    return entry


def verified_concepts(clusters: list[dict[str, Any]]) -> list[list[Any]]:
    """[[text, ar], ...] of kept hypotheses, best first (a concept kept in two clusters appears once)."""
    best: dict[str, float] = {}
    for cl in clusters:
        for c in cl["concepts"]:
            if c.get("kept"):
                ar = c.get("ar") or 0.0
                best[c["text"]] = max(best.get(c["text"], -1.0), ar)
    return [[t, a] for t, a in sorted(best.items(), key=lambda kv: -kv[1])]


def best_ar(clusters: list[dict[str, Any]]) -> float | None:
    ars = [c["ar"] for cl in clusters for c in cl["concepts"] if isinstance(c.get("ar"), (int, float))]
    return max(ars) if ars else None
