"""The paper's tables, assembled from what the evaluation rules wrote (the report's "The paper's tables").

- Tables 1 and 2: per model whose final layer has class names, per method and label set, the final-layer
  CLIP cos, text cos and top-1 accuracy under both protocols (``final_layer_metrics.json``), beside the mean
  AR initial and kept of the same method on the same model's penultimate layer (the run whose model entry
  differs only in ``layer``);
- Table 4: the stage-ablation rows (``ablations.json``) with mean AR and, for a final layer, the final-layer
  columns of each variant (``final_layer_variants.json``);
- Table 5: the tau sweep (``sweeps/tau.json``) with the selected share, mean AR and the final-layer columns;
- Fig. 6: the per-class accuracy drop of each zeroed neuron (``ablation/{neuron}.json``), its largest drops;
- the trained world's models: held-out accuracy and training time (``trained_world/*/training.json``).

Every table is a plain ``{title, columns, rows, note, source}`` like the run tables; a table whose files do
not exist is left out. The text-cos column names its model (``evaluate.mpnet_model``): in a world with no
sentence model that is an embedder's text side, and the note says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import paths
from .values import as_number, load_json, rounded

PROTOCOL = "clip_dissect"  # the protocol of the ablation and sweep columns (CLIP-Dissect's, the paper's)
FIG6_TOP = 5  # classes shown per zeroed neuron (the largest drops)
ACTIVATION_IRRELEVANT = ("layer", "ground_truth", "batch_size", "dtype")


def family(spec: dict[str, Any]) -> str:
    """Model entries that load one network (everything but the layer and what changes no activation)."""
    return json.dumps({k: v for k, v in spec.items() if k not in ACTIVATION_IRRELEVANT}, sort_keys=True)


def _num(v: Any) -> Any:
    return rounded(as_number(v, "paper table value"))


def _final_cols(row: dict[str, Any] | None) -> list[Any]:
    row = row or {}
    return [_num(row.get("clip_cos")), _num(row.get("mpnet_cos")), _num(row.get("top1_accuracy"))]


def _text_note(rows: list[dict[str, Any]]) -> str:
    clip = sorted({str(r.get("clip_model")) for r in rows if r.get("clip_model")})
    text = sorted({str(r.get("mpnet_model")) for r in rows if r.get("mpnet_model")})
    return f"CLIP cos: {', '.join(clip) or '?'}; text cos: {', '.join(text) or '?'}"


def tables_1_2(
    runs: list[dict[str, Any]], models: dict[str, Any], link: Callable[[Path], str], results: Path
) -> list[dict[str, Any]]:
    """Final-layer metrics per method and label set beside the penultimate layer's mean AR."""
    by_family: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_family.setdefault(family(models.get(r["model"], {})), []).append(r)
    rows, seen, sources = [], [], []
    for r in runs:
        fl_path = results / r["model"] / r["probe"] / r["concept_set"] / Path(paths.FINAL_LAYER_METRICS).name
        if not fl_path.is_file():
            continue
        doc = load_json(fl_path)
        fl = {k: v for k, v in doc.items() if isinstance(v, dict)} if isinstance(doc, dict) else {}
        if not fl:
            continue
        sources.append(link(fl_path))
        penultimate = next(
            (
                o
                for o in by_family[family(models.get(r["model"], {}))]
                if o is not r
                and o["probe"] == r["probe"]
                and o["concept_set"] == r["concept_set"]
                and "ground_truth" not in models.get(o["model"], {})
            ),
            None,
        )
        label_sets = sorted({(str(v.get("method")), str(v.get("labels"))) for v in fl.values()})
        for method, labels in label_sets:
            cd = fl.get(f"{method} / {labels} / clip_dissect")
            www = fl.get(f"{method} / {labels} / www")
            seen += [x for x in (cd, www) if x]
            pen = (penultimate or {}).get("_summaries", {}).get(method) or {}
            rows.append(
                [
                    r["model"],
                    method,
                    labels,
                    (cd or {}).get("n_neurons"),
                    *_final_cols(cd),
                    *_final_cols(www),
                    penultimate["model"] if penultimate else None,
                    _num(pen.get("mean_ar_initial")),
                    _num(pen.get("mean_ar_kept")),
                ]
            )
    if not rows:
        return []
    cols = [
        "final layer",
        "method",
        "labels",
        "neurons",
        "CLIP cos (CLIP-Dissect protocol)",
        "text cos (CLIP-Dissect protocol)",
        "top-1 (CLIP-Dissect protocol)",
        "CLIP cos (WWW protocol)",
        "text cos (WWW protocol)",
        "top-1 (WWW protocol)",
        "penultimate layer",
        "mean AR initial",
        "mean AR kept",
    ]
    note = (
        "labels: hypotheses (the first hypothesis of each selected neuron), verified (the concepts Verify kept), "
        "all_neurons (CLIP-Dissect's label of every neuron, its published setting). " + _text_note(seen)
    )
    return [
        {
            "title": "Tables 1 and 2: final layer against the class names, penultimate mean AR",
            "columns": cols,
            "rows": rows,
            "note": note,
            "source": sources[0],
        }
    ]


def _records(obj: Any) -> list[dict[str, Any]]:
    """The rows of a table file: a list of objects, or the values of a mapping of objects (else none)."""
    rows = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else []
    return [r for r in rows if isinstance(r, dict)]


def _variants(run_dir: Path) -> dict[str, dict[str, Any]]:
    p = run_dir / Path(paths.FINAL_LAYER_VARIANTS).name
    doc = load_json(p) if p.is_file() else {}
    return doc if isinstance(doc, dict) else {}


def table_4(runs: list[dict[str, Any]], results: Path, link: Callable[[Path], str]) -> list[dict[str, Any]]:
    """Stage ablations with the final-layer columns of each variant."""
    rows, seen, source = [], [], None
    for r in runs:
        p = results / paths.STAGE_ABLATIONS / r["model"] / r["probe"] / r["concept_set"]
        p = p / Path(paths.STAGE_ABLATION_TABLE).name
        if not p.is_file():
            continue
        source = source or link(p)
        fl = _variants(results / r["model"] / r["probe"] / r["concept_set"])
        doc = load_json(p)
        for v in _records(doc.get("variants") if isinstance(doc, dict) else doc):
            f = fl.get(f"{v['variant']} / {PROTOCOL}")
            seen += [f] if f else []
            rows.append(
                [
                    r["model"],
                    v.get("label"),
                    v.get("n_selected"),
                    v.get("n_hypotheses"),
                    _num(v.get("mean_ar_initial")),
                    _num(v.get("mean_ar")),
                    *(_final_cols(f) if fl else [None, None, None]),
                ]
            )
    if not rows:
        return []
    cols = ["model", "stages", "selected", "hypotheses", "mean AR initial", "mean AR", "CLIP cos", "text cos"]
    return [
        {
            "title": "Table 4: stage ablations",
            "columns": [*cols, "top-1"],
            "rows": rows,
            "note": "mean AR: of what the variant reports (kept hypotheses; every hypothesis without Verify). "
            "Final-layer columns: verified labels, CLIP-Dissect protocol. "
            + (_text_note(seen) if seen else ""),
            "source": source,
        }
    ]


def table_5(runs: list[dict[str, Any]], results: Path, link: Callable[[Path], str]) -> list[dict[str, Any]]:
    """The tau sweep with the selected share, mean AR and the final-layer columns."""
    rows, seen, source = [], [], None
    for r in runs:
        run_dir = results / r["model"] / r["probe"] / r["concept_set"]
        p = run_dir / Path(paths.SWEEP_TABLE).relative_to(Path(paths.RESULTS) / paths.RUN)
        if not p.is_file():
            continue
        source = source or link(p)
        fl = _variants(run_dir)
        for s in sorted(_records(load_json(p)), key=lambda row: _num(row.get("tau")) or 0):
            f = (
                fl.get(f"tau={s.get('tau'):g} / {PROTOCOL}")
                if isinstance(s.get("tau"), (int, float))
                else None
            )
            seen += [f] if f else []
            rows.append(
                [
                    r["model"],
                    _num(s.get("tau")),
                    s.get("n_selected"),
                    _num(s.get("selected_share")),
                    _num(s.get("mean_ar_initial")),
                    _num(s.get("mean_ar_kept")),
                    *(_final_cols(f) if fl else [None, None, None]),
                ]
            )
    if not rows:
        return []
    cols = ["model", "tau", "selected", "selected share", "mean AR initial", "mean AR kept", "CLIP cos"]
    return [
        {
            "title": "Table 5: tau sweep",
            "columns": [*cols, "text cos", "top-1"],
            "rows": rows,
            "note": "Final-layer columns: verified labels, CLIP-Dissect protocol. "
            + (_text_note(seen) if seen else ""),
            "source": source,
        }
    ]


def figure_6(runs: list[dict[str, Any]], results: Path, link: Callable[[Path], str]) -> list[dict[str, Any]]:
    """Per zeroed neuron: accuracy before and after, and the classes with the largest drops."""
    out, done = [], set()
    for r in runs:
        if (r["model"], r["probe"]) in done:
            continue
        done.add((r["model"], r["probe"]))
        folder = results / r["model"] / r["probe"] / paths.NEURON_ABLATION_DIR
        for p in sorted(folder.glob("*.json"), key=lambda q: int(q.stem) if q.stem.isdigit() else 0):
            doc = load_json(p)
            if not isinstance(doc, dict):
                continue
            rows = [
                [c.get("class"), c.get("name"), c.get("n_images"), _num(c.get("accuracy")),
                 _num(c.get("ablated_accuracy")), _num(c.get("drop"))]
                for c in doc.get("classes", [])[:FIG6_TOP]
            ]  # fmt: skip
            out.append(
                {
                    "title": f"Fig. 6: {r['model']} ({doc.get('layer')}), neuron {doc.get('neuron')} zeroed",
                    "columns": ["class", "name", "images", "accuracy", "accuracy zeroed", "drop"],
                    "rows": rows,
                    "note": f"accuracy over {doc.get('n_images')} probe images "
                    f"{_num(doc.get('accuracy'))} -> {_num(doc.get('ablated_accuracy'))}; "
                    f"{doc.get('n_changed_predictions')} predictions changed; the {FIG6_TOP} largest drops",
                    "source": link(p.with_suffix(".png")) if p.with_suffix(".png").is_file() else link(p),
                }
            )
    return out


def trained_world_table(results: Path, link: Callable[[Path], str]) -> list[dict[str, Any]]:
    """The trained world's models: what they were trained as and how well they learned."""
    files = sorted((results / paths.TRAINED_WORLD).glob("*/" + Path(paths.TRAINED_METRICS).name))
    rows = []
    for p in files:
        t = load_json(p)
        if not isinstance(t, dict):
            continue
        rows.append(
            [
                t.get("model"),
                t.get("model_spec", {}).get("arch"),
                _num(t.get("accuracy")),
                _num(t.get("min_accuracy")),
                f"{len(t.get('learned', []))} / {len(t.get('classes', []))}",
                t.get("steps"),
                _num(t.get("train_seconds")),
                _num(t.get("cpu_seconds")),
            ]
        )
    if not rows:
        return []
    cols = ["model", "arch", "held-out accuracy", "floor", "classes learned", "steps", "train s", "CPU s"]
    return [
        {
            "title": "The trained world's models",
            "columns": cols,
            "rows": rows,
            "note": "held-out accuracy on the world's held-out pictures; a model under the floor stops the run",
            "source": link(files[0]),
        }
    ]


def paper_tables(
    runs: list[dict[str, Any]], models: dict[str, Any], results: Path, link: Callable[[Path], str]
) -> list[dict[str, Any]]:
    """Every paper table the results allow, in the paper's order."""
    return [
        *trained_world_table(results, link),
        *tables_1_2(runs, models, link, results),
        *table_4(runs, results, link),
        *table_5(runs, results, link),
        *figure_6(runs, results, link),
    ]
