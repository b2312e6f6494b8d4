"""Evaluation: the paper's comparisons as workflow targets.

Final-layer metrics (:func:`final_layer_metrics`)
    For a layer with one neuron per class (``layer: fc``) and the model's ``ground_truth`` (a list file, one
    class string per class index, e.g. ``tench, Tinca tinca``), every method's labels are compared with the
    neuron's class under two protocols, both reported and named:

    - ``clip_dissect`` (CLIP-Dissect's): the neuron's one label (its best concept) against the whole class
      string. CLIP cos / mpnet cos = cos(e(label), e(class string)) with L2-normalised text embeddings of the
      raw strings; top-1 accuracy = label equals the class string (case-insensitive, whitespace collapsed).
    - ``www`` (WWW's): every predicted concept of the neuron against every comma-separated synonym of the
      class, all lower-cased; cos = mean over all (concept, synonym) pairs; top-1 accuracy = the best concept
      equals one of the synonyms.

    Means are over the neurons a label set covers (``n_neurons``). Label sets: ``hypotheses`` (every
    hypothesis of the selected neurons, cluster by cluster in rank order; the label is the first), ``verified``
    (the concepts Verify kept, best AR first) and, for CLIP-Dissect, ``all_neurons`` (its label of every neuron
    of the layer, its own published setting). CLIP cos uses ``evaluate.clip_model`` (an embedder spec, default
    the run's embedder), mpnet cos ``evaluate.mpnet_model`` (a sentence-transformers model id or folder, loaded
    with ``transformers``: mean pooling over tokens, then L2 normalisation, as sentence-transformers does).

Neuron ablation (:func:`run_ablation`, the paper's Fig. 6)
    Each neuron of ``evaluate.ablate_neurons`` is zeroed in the analysed layer (a forward hook sets its channel
    to 0: dim 1 of a conv map or of ``[B, C]``, the last dim of transformer tokens) and the model's top-1
    accuracy per class is measured on the labelled probe set (labels are class indices of the model's output)
    with and without it. ``ablation/{neuron}.json`` lists the classes by accuracy drop, largest first;
    ``ablation/{neuron}.png`` plots the top ones.

Sweeps (:func:`run_sweep_tau`, the paper's Tables 4/5)
    ``sweeps: {select.tau: [...]}``. A neuron's hypotheses, and every hypothesis' AR, do not depend on tau (its
    threshold is its own p99): only which neurons are selected, and so the mean AR the filter uses, does. The
    sweep therefore hypothesises once for the loosest tau (the run's own results when they already cover it)
    and, per tau, keeps the neurons whose ratio exceeds it and reruns Verify's own AR and filter code on the
    shared generation cache: no probe rerun, no image generated twice.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import atomic_path, read_json, write_json

log = logging.getLogger(__name__)

PROTOCOLS = {
    "clip_dissect": "CLIP-Dissect: one label vs the whole class string",
    "www": "WWW: every predicted concept vs every comma-separated synonym, lower-cased, mean",
}
_WS = re.compile(r"\s+")


class EvaluateError(ValueError):
    """Bad input for an evaluation: the message names the file, neuron, class or config key."""


# ----------------------------------------------------------------------------------------------------------
# final-layer metrics: pure functions


def normalize_text(s: str) -> str:
    return _WS.sub(" ", s).strip().lower()


def synonyms(class_string: str) -> list[str]:
    """``"tench, Tinca tinca"`` -> ``["tench", "tinca tinca"]`` (lower-cased, blanks dropped)."""
    return [normalize_text(p) for p in class_string.split(",") if normalize_text(p)]


def read_ground_truth(path: str | os.PathLike[str], n_neurons: int | None = None) -> list[str]:
    """One class string per line, in class-index order; the count must match the layer's neurons."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise EvaluateError(f"ground_truth class list not found: {p}")
    lines = p.read_text(encoding="utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.rstrip("\r") for ln in lines]
    blank = [i for i, ln in enumerate(lines) if not ln.strip()]
    if blank:
        raise EvaluateError(f"ground_truth {p}: class {blank[0]} (line {blank[0] + 1}) is blank")
    if n_neurons is not None and len(lines) != n_neurons:
        raise EvaluateError(f"ground_truth {p} lists {len(lines)} classes but the analysed layer has {n_neurons} "
                            "neurons; final-layer metrics need one class per neuron (layer: fc)")
    return lines


def protocol_scores(predicted: dict[int, list[str]], classes: list[str],
                    encoders: dict[str, Callable[[list[str]], np.ndarray]]) -> dict[str, dict[str, Any]]:
    """Both protocols for one label set. ``predicted``: neuron -> concepts, best first (neurons with none are
    skipped); ``encoders``: metric name (``clip``, ``mpnet``) -> texts -> [n, D] L2-normalised embeddings."""
    neurons = sorted(n for n, c in predicted.items() if c)
    for n in neurons:
        if not 0 <= n < len(classes):
            raise EvaluateError(f"neuron {n} has no ground-truth class ({len(classes)} classes)")
    texts: set[str] = set()
    for n in neurons:
        texts.add(predicted[n][0])
        texts.add(classes[n])
        texts.update(normalize_text(c) for c in predicted[n])
        texts.update(synonyms(classes[n]))
    order = sorted(texts)
    emb = {name: dict(zip(order, np.asarray(enc(order), dtype=np.float64), strict=True)) if order else {}
           for name, enc in encoders.items()}

    def cos(name: str, a: str, b: str) -> float:
        return float(emb[name][a] @ emb[name][b])

    out: dict[str, dict[str, Any]] = {}
    for proto in PROTOCOLS:
        row: dict[str, Any] = {"n_neurons": len(neurons)}
        for name in encoders:
            vals = []
            for n in neurons:
                if proto == "clip_dissect":
                    vals.append(cos(name, predicted[n][0], classes[n]))
                else:
                    syn = synonyms(classes[n])
                    vals.append(float(np.mean([cos(name, normalize_text(c), s) for c in predicted[n] for s in syn])))
            row[f"{name}_cos"] = float(np.mean(vals)) if vals else math.nan
        if proto == "clip_dissect":
            hits = [normalize_text(predicted[n][0]) == normalize_text(classes[n]) for n in neurons]
        else:
            hits = [normalize_text(predicted[n][0]) in synonyms(classes[n]) for n in neurons]
        row["top1_accuracy"] = float(np.mean(hits)) if hits else math.nan
        out[proto] = row
    return out


# ----------------------------------------------------------------------------------------------------------
# label sets read from the result tree


def hypotheses_labels(folder: str | os.PathLike[str]) -> dict[int, list[str]]:
    """neuron -> every hypothesised concept, cluster by cluster in rank order (first = the label)."""
    from .verify import read_hypotheses

    out: dict[int, list[str]] = {}
    for h in read_hypotheses(folder):
        seen: list[str] = []
        for c in h["clusters"]:
            for con in sorted(c.get("concepts", []), key=lambda x: x.get("rank", 0)):
                if con["text"] not in seen:
                    seen.append(con["text"])
        out[int(h["neuron"])] = seen
    return out


def verified_labels(neuron_concepts_csv: str | os.PathLike[str]) -> dict[int, list[str]]:
    """neuron -> the concepts Verify kept, best AR first (verified neurons only)."""
    out: dict[int, list[str]] = {}
    with open(neuron_concepts_csv, newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            if r.get("status") == "verified":
                try:
                    out[int(r["neuron"])] = list(json.loads(r["concepts"]))
                except (KeyError, ValueError) as exc:
                    raise EvaluateError(f"{neuron_concepts_csv}: neuron {r.get('neuron')}: bad 'concepts' "
                                        f"column ({exc})") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# text encoders


class SentenceEncoder:
    """A sentence-transformers model (e.g. all-mpnet-base-v2) through ``transformers``: token embeddings,
    mean pooling over the attention mask, L2 normalisation (that model's own pipeline)."""

    def __init__(self, name_or_path: str, device: torch.device | str = "cpu", max_length: int = 384) -> None:
        from transformers import AutoModel, AutoTokenizer

        from .backends import BackendError
        from .backends.offline import require_hub

        local = os.path.isdir(os.path.expanduser(name_or_path))
        path = os.path.expanduser(name_or_path) if local else name_or_path
        if not local:
            require_hub(name_or_path, "evaluate.mpnet_model")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise BackendError(f"evaluate.mpnet_model {name_or_path!r} cannot be loaded: {exc}") from exc
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        self.name = name_or_path
        self.max_length = int(min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length))

    @torch.inference_mode()
    def encode_text(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        outs = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            hidden = self.model(**tok).last_hidden_state.float()
            mask = tok["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            outs.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(outs) if outs else torch.zeros((0, 1))


def _encoder_fn(encoder: Any, batch_size: int = 256) -> Callable[[list[str]], np.ndarray]:
    def enc(texts: list[str]) -> np.ndarray:
        parts = [encoder.encode_text(texts[i : i + batch_size]).float().numpy() for i in range(0, len(texts), batch_size)]
        z = np.concatenate(parts).astype(np.float64)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    return enc


def final_layer_metrics(label_sets: dict[str, dict[int, list[str]]], classes: list[str],
                        encoders: dict[str, Callable[[list[str]], np.ndarray]],
                        extra: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """``label_sets``: ``"method / labels"`` -> neuron -> concepts. One row per label set and protocol, keyed
    ``"method / labels / protocol"``."""
    out: dict[str, dict[str, Any]] = {}
    for key, predicted in label_sets.items():
        method, labels = (key.split(" / ", 1) + [""])[:2]
        for proto, row in protocol_scores(predicted, classes, encoders).items():
            out[f"{key} / {proto}"] = {"method": method, "labels": labels, "protocol": proto, **row,
                                       **(extra or {})}
    return out


def run_final_layer_metrics(select_summary: str, ground_truth: str, out_json: str, methods: dict[str, dict[str, str]],
                            clip_encoder: Any, mpnet_encoder: Any, clip_name: str = "", mpnet_name: str = "") -> dict:
    """``methods``: name -> {``hypotheses``: folder, ``neuron_concepts``: csv, ``labels``: csv (optional)}."""
    sel = read_json(select_summary)
    n_neurons = int(sel.get("n_neurons", len(sel["neurons"])))
    classes = read_ground_truth(ground_truth, n_neurons)
    label_sets: dict[str, dict[int, list[str]]] = {}
    for method, files in methods.items():
        label_sets[f"{method} / hypotheses"] = hypotheses_labels(files["hypotheses"])
        label_sets[f"{method} / verified"] = verified_labels(files["neuron_concepts"])
        if files.get("labels"):
            from .baselines import read_labels

            label_sets[f"{method} / all_neurons"] = {n: [t] for n, t in read_labels(files["labels"]).items()}
    encoders = {"clip": _encoder_fn(clip_encoder), "mpnet": _encoder_fn(mpnet_encoder)}
    res = final_layer_metrics(label_sets, classes, encoders,
                              extra={"clip_model": clip_name, "mpnet_model": mpnet_name})
    write_json(out_json, res)
    for key, row in res.items():
        log.info("%s: %d neurons, CLIP cos %.4f, mpnet cos %.4f, top-1 %.4f", key, row["n_neurons"],
                 row["clip_cos"], row["mpnet_cos"], row["top1_accuracy"])
    return res


# ----------------------------------------------------------------------------------------------------------
# neuron ablation


def zero_channel(output: torch.Tensor, neuron: int) -> torch.Tensor:
    """The layer output with one neuron set to 0 (dim 1 of [B, C, ...] maps and [B, C]; last dim of tokens)."""
    out = output.clone()
    if out.dim() == 3:
        out[..., neuron] = 0
    else:
        out[:, neuron] = 0
    return out


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """-> (images per class [n_classes], accuracy per class [n_classes], NaN where a class has no image)."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    correct = np.bincount(labels[np.asarray(pred) == labels], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    return counts, acc


def ablation_table(base_pred: np.ndarray, ablated_pred: np.ndarray, labels: np.ndarray, n_classes: int,
                   class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Classes with images, by accuracy drop (base - ablated), largest first; ties by class index."""
    counts, base = per_class_accuracy(base_pred, labels, n_classes)
    _, abl = per_class_accuracy(ablated_pred, labels, n_classes)
    rows = []
    for c in np.flatnonzero(counts > 0):
        rows.append({"class": int(c), "name": class_names[c] if class_names else str(c), "n_images": int(counts[c]),
                     "accuracy": float(base[c]), "ablated_accuracy": float(abl[c]),
                     "drop": float(base[c] - abl[c])})
    rows.sort(key=lambda r: (-r["drop"], r["class"]))
    return rows


def plot_ablation(doc: dict[str, Any], out_png: str, top: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["classes"][:top]
    fig, ax = plt.subplots(figsize=(6, 0.35 * max(len(rows), 1) + 1.2))
    names = [r["name"][:40] for r in rows][::-1]
    drops = [100 * r["drop"] for r in rows][::-1]
    ax.barh(range(len(rows)), drops, color=["#c0392b" if d > 0 else "#7f8c8d" for d in drops])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("accuracy drop when zeroed (percentage points)")
    ax.set_title(f"{doc['model']} {doc['layer']} neuron {doc['neuron']}: overall "
                 f"{100 * doc['accuracy']:.1f}% -> {100 * doc['ablated_accuracy']:.1f}%", fontsize=9)
    ax.axvline(0, color="black", linewidth=0.8)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _logits(model: Any, x: torch.Tensor) -> torch.Tensor:
    out = model.model(x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if hasattr(out, "logits"):
        out = out.logits
    model._captured.clear()
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise EvaluateError(f"model {model.name!r}: neuron ablation needs class logits [B, classes], the forward "
                            f"pass returned {getattr(out, 'shape', type(out).__name__)}")
    return out.float()


@torch.inference_mode()
def run_ablation(model: Any, probe: Any, neurons: Sequence[int], out_dir: str, class_names: Sequence[str] | None = None,
                 batch_size: int = 64, num_workers: int = 0, strict_names: bool = True) -> dict[int, dict[str, Any]]:
    """Zero each neuron in turn; per-class accuracy drop on the labelled probe set (see the module docstring).
    One pass over the probe set: every batch runs once intact and once per ablated neuron. ``class_names``
    (one per model output) label the classes; with ``strict_names=False`` a list of another length (a probe's
    folder names) is ignored with a warning instead of an error."""
    from .probe import _collate, _ProbeDataset

    neurons = [int(n) for n in neurons]
    bad = [n for n in neurons if not 0 <= n < model.n_neurons]
    if bad:
        raise EvaluateError(f"evaluate.ablate_neurons: neuron(s) {bad} do not exist in layer {model.layer!r} of model "
                            f"{model.name!r} ({model.n_neurons} neurons)")
    if probe.labels is None:
        raise EvaluateError(f"evaluate.ablate_neurons needs a labelled probe set; probe {probe.name!r} "
                            f"({probe.root}) has no class labels")
    module = dict(model.model.named_modules())[model.layer]
    current: list[int | None] = [None]

    def hook(_m: Any, _i: Any, output: Any) -> Any:
        if current[0] is None:
            return None
        if isinstance(output, (tuple, list)):
            return type(output)([zero_channel(output[0], current[0]), *output[1:]])
        return zero_channel(output, current[0])

    handle = module.register_forward_hook(hook)
    loader = torch.utils.data.DataLoader(_ProbeDataset(probe, model.preprocess), batch_size=batch_size,
                                         num_workers=num_workers, collate_fn=_collate)
    preds: dict[int | None, list[np.ndarray]] = {None: [], **{n: [] for n in neurons}}
    labels: list[int] = []
    n_classes = None
    try:
        for idx, xs, bad_imgs in loader:
            for _i, msg in bad_imgs:
                log.warning("ablation: skipped unreadable image %s", msg)
            if xs is None:
                continue
            x = xs.to(model.device)
            labels += [int(probe.labels[i]) for i in idx]
            for n in [None, *neurons]:
                current[0] = n
                logits = _logits(model, x)
                n_classes = logits.shape[1]
                preds[n].append(logits.argmax(1).cpu().numpy())
    finally:
        current[0] = None
        handle.remove()
    if not labels:
        raise EvaluateError(f"probe {probe.name!r}: no readable image for the neuron ablation")
    y = np.array(labels, dtype=np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise EvaluateError(f"probe {probe.name!r} has class labels up to {int(y.max())} but model {model.name!r} "
                            f"outputs {n_classes} classes; the probe's classes must be the model's classes, in order")
    if class_names is not None and len(class_names) != n_classes:
        msg = f"{len(class_names)} class names for the {n_classes} outputs of model {model.name!r}"
        if strict_names:
            raise EvaluateError(msg + " (models.<name>.ground_truth must list one class per output)")
        log.warning("%s; classes are shown by index", msg)
        class_names = None
    base = np.concatenate(preds[None])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    docs = {}
    for n in neurons:
        abl = np.concatenate(preds[n])
        doc = {"model": model.name, "layer": model.layer, "neuron": n, "probe": probe.name, "n_images": int(len(y)),
               "accuracy": float(np.mean(base == y)), "ablated_accuracy": float(np.mean(abl == y)),
               "n_changed_predictions": int(np.sum(base != abl)),
               "classes": ablation_table(base, abl, y, n_classes, class_names)}
        write_json(os.path.join(out_dir, f"{n}.json"), doc)
        plot_ablation(doc, os.path.join(out_dir, f"{n}.png"))
        docs[n] = doc
        top = doc["classes"][0] if doc["classes"] else None
        log.info("neuron %d zeroed: accuracy %.4f -> %.4f; largest drop %s", n, doc["accuracy"],
                 doc["ablated_accuracy"], f"{top['name']} ({top['drop']:+.3f})" if top else "-")
    return docs


# ----------------------------------------------------------------------------------------------------------
# sweeps


def format_tau(tau: float) -> str:
    """Path form of a tau value: ``4.0`` -> ``4``, ``7.5`` -> ``7.5``."""
    return f"{float(tau):g}"


def select_at_tau(summary: dict[str, Any], tau: float) -> dict[str, Any]:
    """A selection summary recomputed for another tau from the per-neuron ratios (dead neurons never)."""
    out = {**summary, "tau": float(tau), "enabled": True, "neurons": {}}
    n_sel = 0
    for key, info in summary["neurons"].items():
        ratio = float(info["ratio"])  # "inf" strings parse
        sel = (not info.get("dead")) and ratio > tau
        out["neurons"][key] = {**info, "selected": bool(sel)}
        n_sel += sel
    out["n_selected"] = n_sel
    return out


def run_sweep_tau(select_summary: str, hypotheses_dir: str, manifest_paths: Sequence[str], model: str, tau: float,
                  out_dir: str, enabled: bool = True) -> dict[str, Any]:
    """One tau of a sweep: the selection at tau, the subset of hypotheses, and Verify's AR/filter on them.
    Writes ``select_summary.json``, ``hypotheses/``, ``verify/{ar.csv,summary.json,generated.json}`` and
    ``neuron_concepts.csv`` under ``out_dir`` (the same names as a run's)."""
    from .verify import run_activation_rate

    sel = select_at_tau(read_json(select_summary), tau)
    base = read_json(select_summary)
    missing_sel = [k for k, v in sel["neurons"].items() if v["selected"] and not base["neurons"][k].get("selected")]
    if missing_sel:
        raise EvaluateError(f"sweep tau={format_tau(tau)} selects neuron(s) {missing_sel[:10]} that {select_summary} "
                            f"(tau={base.get('tau')}) did not hypothesise; the sweep's selection must use the "
                            "smallest tau")
    out = Path(out_dir)
    hyp_out = out / "hypotheses"
    if hyp_out.exists():
        shutil.rmtree(hyp_out)
    hyp_out.mkdir(parents=True)
    src = Path(hypotheses_dir)
    for key, info in sel["neurons"].items():
        if not info["selected"]:
            continue
        f = src / f"{key}.json"
        if not f.is_file():
            raise EvaluateError(f"sweep tau={format_tau(tau)}: neuron {key} is selected but {f} does not exist; "
                                "rerun the sweep's hypothesize")
        shutil.copyfile(f, hyp_out / f.name)
    write_json(out / "select_summary.json", sel)
    summary = run_activation_rate(str(hyp_out), str(out / "select_summary.json"), list(manifest_paths), model,
                                  str(out / "verify" / "ar.csv"), str(out / "verify" / "summary.json"),
                                  str(out / "neuron_concepts.csv"), out_generated=str(out / "verify" / "generated.json"),
                                  enabled=enabled, method="sieve")
    return {**summary, "tau": float(tau)}


def sweep_table(summaries: dict[float, dict[str, Any]], n_neurons: int) -> dict[str, dict[str, Any]]:
    """One row per tau (ascending): selected neurons, hypotheses, mean AR initial/kept, verified share."""
    rows = {}
    for tau in sorted(summaries):
        s = summaries[tau]
        n_sel = int(s.get("n_selected", 0))
        rows[f"tau={format_tau(tau)}"] = {
            "tau": float(tau), "n_selected": n_sel, "selected_share": n_sel / n_neurons if n_neurons else math.nan,
            "n_hypotheses": s.get("n_hypotheses"), "mean_ar_initial": s.get("mean_ar_initial"),
            "n_kept": s.get("n_kept"), "mean_ar_kept": s.get("mean_ar_kept"), "n_verified": s.get("n_verified"),
            "verified_share": s["n_verified"] / n_sel if n_sel else math.nan,
        }
    return rows


def run_sweep_table(summary_paths: Sequence[str], taus: Sequence[float], out_json: str) -> dict[str, Any]:
    if len(summary_paths) != len(taus):
        raise EvaluateError(f"{len(summary_paths)} sweep summaries for {len(taus)} tau values")
    summaries = {}
    n_neurons = 0
    for tau, p in zip(taus, summary_paths, strict=True):
        s = read_json(p)
        summaries[float(tau)] = s
        n_neurons = int(s.get("n_neurons", n_neurons))
    table = sweep_table(summaries, n_neurons)
    write_json(out_json, table)
    return table


# ----------------------------------------------------------------------------------------------------------
# planted truth: every method side by side


TRUTH_METHOD_KEYS = ("recovery", "n_recovered_concepts", "n_planted_concepts", "neurons_recovered_share",
                     "mean_ar_initial", "mean_ar_kept")


def method_truth(spec: str | None, select_path: str, neuron_concepts_path: str, ar_path: str,
                 verify_summary_path: str) -> dict[str, Any]:
    """One method's Verify result against a synthetic world's planted truth (the truth stage's own code)."""
    from .synthetic.truth import evaluate as truth_evaluate

    _, s = truth_evaluate(spec, select_path, neuron_concepts_path, ar_path, verify_summary_path)
    vs = read_json(verify_summary_path)
    return {**{k: s.get(k) for k in TRUTH_METHOD_KEYS}, "n_hypotheses": vs.get("n_hypotheses"),
            "n_verified": vs.get("n_verified"), "hypotheses": s.get("hypotheses")}


def add_methods_to_truth(summary_path: str, spec: str | None, select_path: str,
                         baselines: dict[str, Sequence[str]], sieve_verify_summary: str | None = None) -> dict[str, Any]:
    """Add each baseline's recovery and mean AR to ``truth_summary.json`` (key = method name, what the report's
    comparison table reads) and a ``methods`` table with SIEVE beside them. ``baselines``: method -> its
    ``verify/ar.csv``, ``verify/summary.json`` and ``neuron_concepts.csv`` (any order)."""
    summary = read_json(summary_path)
    vs = read_json(sieve_verify_summary) if sieve_verify_summary else {}
    methods = {"sieve": {**{k: summary.get(k) for k in TRUTH_METHOD_KEYS}, "n_hypotheses": vs.get("n_hypotheses"),
                         "n_verified": vs.get("n_verified")}}
    for name, files in baselines.items():
        by_name = {Path(f).name: f for f in files}
        missing = [f for f in ("ar.csv", "summary.json", "neuron_concepts.csv") if f not in by_name]
        if missing:
            raise EvaluateError(f"truth of baseline {name}: missing {missing} among {list(files)}")
        res = method_truth(spec, select_path, by_name["neuron_concepts.csv"], by_name["ar.csv"],
                           by_name["summary.json"])
        summary[name] = res
        methods[name] = {k: v for k, v in res.items() if k != "hypotheses"}
    summary["methods"] = methods
    write_json(summary_path, summary)
    for name, m in methods.items():
        log.info("truth %s: recovery %s, mean AR initial %s, kept %s", name, m.get("recovery"),
                 m.get("mean_ar_initial"), m.get("mean_ar_kept"))
    return summary
