"""Final-layer metrics (:func:`final_layer_metrics`): every method's labels against the model's classes.

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
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import read_json, write_json
from . import EvaluateError

log = logging.getLogger(__name__)

PROTOCOLS = {
    "clip_dissect": "CLIP-Dissect: one label vs the whole class string",
    "www": "WWW: every predicted concept vs every comma-separated synonym, lower-cased, mean",
}
_WS = re.compile(r"\s+")


# ----------------------------------------------------------------------------------------------------------
# final-layer metrics: pure functions


def normalize_text(s: str) -> str:
    return _WS.sub(" ", s).strip().lower()


def synonyms(class_string: str) -> list[str]:
    """``"tench, Tinca tinca"`` -> ``["tench", "tinca tinca"]`` (lower-cased, blanks dropped)."""
    return [normalize_text(p) for p in class_string.split(",") if normalize_text(p)]


# How a published class list names its classes -> the class strings of the final-layer metrics.
# ``places365``: CSAIL's categories_places365.txt lines (``/a/apartment_building/outdoor 8``) cleaned as
# CLIP-Dissect cleans them for its final-layer cos (experiments/table2.ipynb: ``cls[3:].split(' ')[0]``,
# giving ``apartment_building/outdoor``).
CLASS_NAME_CLEANERS: dict[str, Callable[[str], str]] = {
    "none": lambda line: line,
    "places365": lambda line: line[3:].split(" ")[0],
}


def clean_class_names(lines: list[str], clean: str = "none") -> list[str]:
    """The class strings of a published list's lines (blank trailing lines dropped)."""
    if clean not in CLASS_NAME_CLEANERS:
        raise EvaluateError(
            f"ground_truth.clean must be one of {', '.join(CLASS_NAME_CLEANERS)}, not {clean!r}"
        )
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return [CLASS_NAME_CLEANERS[clean](ln.rstrip("\r")) for ln in lines]


def fetch_ground_truth(spec: dict[str, Any], out_txt: str, downloads: str) -> list[str]:
    """A class list given by ``url`` + ``sha256`` (fetched once into ``downloads/{sha256}.txt`` and checked,
    as concept lists are; ``snakemake prefetch`` fetches it ahead for offline nodes), cleaned by ``clean``
    and written one class per line to ``out_txt``: the file every final-layer rule reads."""
    from ..concepts import fetch_concept_list, read_lines
    from ..io import atomic_path

    raw = fetch_concept_list(
        spec["url"], spec["sha256"], Path(downloads) / f"{spec['sha256']}.txt", what="class list"
    )
    names = clean_class_names(read_lines(raw), spec.get("clean", "none"))
    blank = [i for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise EvaluateError(f"ground_truth {spec['url']}: class {blank[0]} is blank after cleaning")
    with atomic_path(out_txt) as tmp:
        Path(tmp).write_text("".join(n + "\n" for n in names), encoding="utf-8")
    log.info(
        "ground truth: %d classes from %s (clean: %s)", len(names), spec["url"], spec.get("clean", "none")
    )
    return names


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
        raise EvaluateError(
            f"ground_truth {p} lists {len(lines)} classes but the analysed layer has {n_neurons} "
            "neurons; final-layer metrics need one class per neuron (layer: fc)"
        )
    return lines


def protocol_scores(
    predicted: dict[int, list[str]],
    classes: list[str],
    encoders: dict[str, Callable[[list[str]], np.ndarray]],
) -> dict[str, dict[str, Any]]:
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
    emb = {
        name: dict(zip(order, np.asarray(enc(order), dtype=np.float64), strict=True)) if order else {}
        for name, enc in encoders.items()
    }

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
                    vals.append(
                        float(np.mean([cos(name, normalize_text(c), s) for c in predicted[n] for s in syn]))
                    )
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
    from ..verify.requests import read_hypotheses

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
                    raise EvaluateError(
                        f"{neuron_concepts_csv}: neuron {r.get('neuron')}: bad 'concepts' column ({exc})"
                    ) from None
    return out


# ----------------------------------------------------------------------------------------------------------
# text encoders


class SentenceEncoder:
    """A sentence-transformers model (e.g. all-mpnet-base-v2) through ``transformers``: token embeddings,
    mean pooling over the attention mask, L2 normalisation (that model's own pipeline)."""

    def __init__(self, name_or_path: str, device: torch.device | str = "cpu", max_length: int = 384) -> None:
        from transformers import AutoModel, AutoTokenizer

        from ..backends import BackendError
        from ..backends.offline import require_hub
        from ..backends.refs import parse_ref

        ref = parse_ref(name_or_path, hub_ids=True)
        if ref.kind == "hub":
            path = ref.value
            require_hub(path, "evaluate.mpnet_model")
        elif ref.kind == "path":
            path = str(ref.existing_dir("evaluate.mpnet_model"))
        else:
            raise BackendError(
                f"evaluate.mpnet_model {name_or_path!r}: give a hub id or a local folder, not a URL"
            )
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise BackendError(f"evaluate.mpnet_model {name_or_path!r} cannot be loaded: {exc}") from exc
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        self.name = name_or_path
        self.max_length = int(
            min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        )

    @torch.inference_mode()
    def encode_text(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        outs = []
        for i in range(0, len(texts), batch_size):
            tok = self.tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**tok).last_hidden_state.float()
            mask = tok["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            outs.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(outs) if outs else torch.zeros((0, 1))


def load_text_model(spec: str | dict[str, Any], device: torch.device | str = "cpu") -> tuple[Any, str]:
    """The text model of the text-cos column (``evaluate.mpnet_model``) and the name the results give it.

    A string is a sentence-transformers model (:class:`SentenceEncoder`, the paper's all-mpnet-base-v2). A
    mapping is an embedder spec whose text side is used instead, for a world with no sentence model (the
    trained world: ``{source: synthetic}``); its name says so, so that no table passes it off as mpnet."""
    if isinstance(spec, str):
        return SentenceEncoder(spec, device), spec
    from ..backends.embedders import load_embedder

    encoder = load_embedder(dict(spec), device)
    name = str(getattr(encoder, "name", "") or spec.get("source", "embedder"))
    return encoder, f"{name} text side (embedder spec, not a sentence model)"


def _encoder_fn(encoder: Any, batch_size: int = 256) -> Callable[[list[str]], np.ndarray]:
    def enc(texts: list[str]) -> np.ndarray:
        parts = [
            encoder.encode_text(texts[i : i + batch_size]).float().numpy()
            for i in range(0, len(texts), batch_size)
        ]
        z = np.concatenate(parts).astype(np.float64)
        return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)

    return enc


def final_layer_metrics(
    label_sets: dict[str, dict[int, list[str]]],
    classes: list[str],
    encoders: dict[str, Callable[[list[str]], np.ndarray]],
    extra: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """``label_sets``: ``"method / labels"`` -> neuron -> concepts. One row per label set and protocol, keyed
    ``"method / labels / protocol"``."""
    out: dict[str, dict[str, Any]] = {}
    for key, predicted in label_sets.items():
        method, labels = (key.split(" / ", 1) + [""])[:2]
        for proto, row in protocol_scores(predicted, classes, encoders).items():
            out[f"{key} / {proto}"] = {
                "method": method,
                "labels": labels,
                "protocol": proto,
                **row,
                **(extra or {}),
            }
    return out


def run_final_layer_metrics(
    select_summary: str,
    ground_truth: str,
    out_json: str,
    methods: dict[str, dict[str, str]],
    clip_encoder: Any,
    mpnet_encoder: Any,
    clip_name: str = "",
    mpnet_name: str = "",
) -> dict:
    """``methods``: name -> {``hypotheses``: folder, ``neuron_concepts``: csv, ``labels``: csv (optional)}."""
    sel = read_json(select_summary)
    n_neurons = int(sel.get("n_neurons", len(sel["neurons"])))
    classes = read_ground_truth(ground_truth, n_neurons)
    label_sets: dict[str, dict[int, list[str]]] = {}
    for method, files in methods.items():
        label_sets[f"{method} / hypotheses"] = hypotheses_labels(files["hypotheses"])
        label_sets[f"{method} / verified"] = verified_labels(files["neuron_concepts"])
        if files.get("labels"):
            from .clip_dissect import read_labels

            label_sets[f"{method} / all_neurons"] = {n: [t] for n, t in read_labels(files["labels"]).items()}
    encoders = {"clip": _encoder_fn(clip_encoder), "mpnet": _encoder_fn(mpnet_encoder)}
    res = final_layer_metrics(
        label_sets, classes, encoders, extra={"clip_model": clip_name, "mpnet_model": mpnet_name}
    )
    write_json(out_json, res)
    for key, row in res.items():
        log.info(
            "%s: %d neurons, CLIP cos %.4f, mpnet cos %.4f, top-1 %.4f",
            key,
            row["n_neurons"],
            row["clip_cos"],
            row["mpnet_cos"],
            row["top1_accuracy"],
        )
    return res


def run_final_layer_variants(
    select_summary: str,
    ground_truth: str,
    out_json: str,
    variants: dict[str, str],
    clip_encoder: Any,
    text_encoder: Any,
    clip_name: str = "",
    text_name: str = "",
) -> dict[str, dict[str, Any]]:
    """The final-layer columns of the paper's Tables 4 and 5: SIEVE's verified labels of every tau of a sweep
    (``tau=4``) and every stage-ablation variant (``full``, ``no_select``, ...) against the class names, under
    both protocols. ``variants``: name -> that variant's neuron_concepts.csv. Rows keyed ``"name / protocol"``,
    with ``variant`` and ``protocol`` columns, the same metrics as :func:`run_final_layer_metrics`."""
    sel = read_json(select_summary)
    classes = read_ground_truth(ground_truth, int(sel.get("n_neurons", len(sel["neurons"]))))
    encoders = {"clip": _encoder_fn(clip_encoder), "mpnet": _encoder_fn(text_encoder)}
    out: dict[str, dict[str, Any]] = {}
    for name, csv_path in variants.items():
        for proto, row in protocol_scores(verified_labels(csv_path), classes, encoders).items():
            out[f"{name} / {proto}"] = {
                "variant": name,
                "protocol": proto,
                **row,
                "clip_model": clip_name,
                "mpnet_model": text_name,
            }
    write_json(out_json, out)
    log.info("final-layer columns of %d variants (%s)", len(variants), ", ".join(variants))
    return out
