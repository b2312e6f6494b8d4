"""Hypothesize stage: CLIP clusters and concept hypotheses per selected neuron.

Steps 1 and 2 (crop each top image to the region of highest activation, CLIP-embed every crop into
``crops.h5``) are :mod:`sieve.crops`; this module reads ``crops.h5`` (:func:`read_crops`) and does:

3. **Cluster** (:func:`cluster_embeddings`): Ward agglomerative clustering on a neuron's K crop embeddings
   for every k in 2..min(k_max, K - 1); the k with the best silhouette (Euclidean, which on unit vectors
   orders like cosine) wins; if that best score is below ``silhouette_floor`` (or no k can be tried) the
   neuron has one cluster. Clusters are numbered by their best-ranked crop (cluster 0 holds the top image).
   Clusters smaller than ``min_cluster_size`` are dropped and listed with the reason. ``cluster: false``
   (the "no Cluster" stage ablation) keeps one cluster with every crop.
4. **Hypothesize** (:func:`concept_scores`): cos(x, t) = x.t / (|x| |t|) between a crop embedding x and a
   concept's text embedding t (the template filled with the concept), and score(c) = mean over the cluster's
   crops of cos(x_i, t_c); the ``concepts_per_cluster`` best concepts are kept (ties: concept-set order).
   Ranks are 0-based, like crop ranks.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from .backends import embedding_spec
from .config import with_defaults
from .io import atomic_path, read_json, write_json

if TYPE_CHECKING:  # torch is imported where it is used: clustering and scoring jobs start without it
    pass

log = logging.getLogger(__name__)

STR_DT = h5py.string_dtype("utf-8")

# Defaults for direct calls (the workflow passes every setting): the schema's, never retyped here.
_HYP = with_defaults(None, "hypothesize")


class HypothesizeError(ValueError):
    """Inconsistent inputs of the Hypothesize stage; the message names the file and the neuron."""


# ----------------------------------------------------------------------------------------------------------
# 3. clustering


def ward_labels(tree: np.ndarray, k: int) -> np.ndarray:
    """The k clusters of a Ward tree (scipy's linkage matrix [n - 1, 4]) that its first n - k merges leave:
    scikit-learn's ``AgglomerativeClustering(n_clusters=k, linkage="ward")`` partition, which cuts the same
    scipy tree, without importing scikit-learn (seconds per job, issue 14). Labels 0..k-1 in order of each
    cluster's first member."""
    n = len(tree) + 1
    if not 1 <= k <= n:
        raise ValueError(f"cannot cut {n} points into {k} clusters")
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    for row, (a, b) in enumerate(tree[: n - k, :2].astype(np.int64)):
        members[n + row] = members.pop(int(a)) + members.pop(int(b))
    labels = np.empty(n, dtype=np.int64)
    for c, m in enumerate(sorted(members.values(), key=min)):
        labels[m] = c
    return labels


def silhouette_score(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of ``x`` [n, D] (float64) under ``labels`` (0..k-1, 2 <= k <= n - 1), Euclidean, computed
    as scikit-learn's ``silhouette_score`` computes it (the same operations in the same order, so the same
    float), without importing scikit-learn."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    freqs = np.bincount(labels)
    if not 2 <= len(freqs) <= n - 1 or (freqs == 0).any():
        raise ValueError(f"silhouette needs 2 to {n - 1} non-empty clusters, got sizes {freqs.tolist()}")
    sq = np.einsum("ij,ij->i", x, x)[:, None]
    d = -2 * (x @ x.T)
    d += sq
    d += sq.T
    np.maximum(d, 0, out=d)
    np.fill_diagonal(d, 0)
    np.sqrt(d, out=d)
    sums = np.zeros((n, len(freqs)), dtype=np.float64)
    for i in range(n):
        sums[i] += np.bincount(labels, weights=d[i], minlength=len(freqs))
    own = (np.arange(n), labels)
    intra = sums[own]
    sums[own] = np.inf
    sums /= freqs
    inter = sums.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        intra /= (freqs - 1).take(labels, mode="clip")
        sil = inter - intra
        sil /= np.maximum(intra, inter)
    return float(np.mean(np.nan_to_num(sil)))


def cluster_embeddings(
    x: np.ndarray,
    k_max: int = _HYP["k_max"],
    silhouette_floor: float = _HYP["silhouette_floor"],
    min_cluster_size: int = _HYP["min_cluster_size"],
    enabled: bool = True,
) -> dict[str, Any]:
    """Ward clustering of one neuron's crop embeddings [K, D] with k chosen by silhouette.

    Returns ``labels`` [K] (cluster ids numbered by best-ranked member), ``silhouette`` {k: score}, ``k``,
    ``clusters`` (kept: cluster, members, size) and ``dropped`` (cluster, size, reason)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    silhouette: dict[str, float] = {}
    labels = np.zeros(n, dtype=int)
    k = 1 if n else 0
    distinct = len(np.unique(np.round(x, 6), axis=0)) if n else 0
    if enabled and n >= 3 and distinct >= 2:
        from scipy.cluster.hierarchy import ward

        tree = ward(x)  # one tree, cut at each k
        best_k, best_s, best_labels = 1, -math.inf, labels
        for kk in range(2, min(k_max, n - 1, distinct) + 1):
            lab = ward_labels(tree, kk)
            s = silhouette_score(x, lab)
            silhouette[str(kk)] = s
            if s > best_s + 1e-12:
                best_k, best_s, best_labels = kk, s, lab
        if best_k > 1 and best_s >= silhouette_floor:
            k, labels = best_k, best_labels
    # renumber: cluster 0 holds the top-ranked crop, cluster 1 the best-ranked crop not in cluster 0, ...
    order: dict[int, int] = {}
    for lab in labels:
        order.setdefault(int(lab), len(order))
    labels = np.array([order[int(lab)] for lab in labels], dtype=int)
    clusters, dropped = [], []
    for c in range(k):
        members = [int(i) for i in np.flatnonzero(labels == c)]
        if len(members) < min_cluster_size:
            dropped.append(
                {
                    "cluster": c,
                    "size": len(members),
                    "members": members,
                    "reason": f"size {len(members)} < min_cluster_size {min_cluster_size}",
                }
            )
        else:
            clusters.append({"cluster": c, "members": members, "size": len(members)})
    return {"labels": labels, "silhouette": silhouette, "k": k, "clusters": clusters, "dropped": dropped}


# ----------------------------------------------------------------------------------------------------------
# 4. concept scores


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def mean_unit(crops: np.ndarray) -> np.ndarray:
    """The mean of a cluster's L2-normalised crop embeddings [n, D] -> [D]."""
    return _unit(crops).mean(axis=0)


def cluster_scores(means: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """Many clusters at once: means [M, D] (from :func:`mean_unit`) against concepts [C, D] -> [M, C]. The mean
    of the cosines equals the dot product of the mean unit crop with the unit text."""
    return np.asarray(means, dtype=np.float64) @ _unit(texts).T


def concept_scores(crops: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """Mean cosine similarity between a cluster's crop embeddings [n, D] and every concept [C, D] -> [C]."""
    return cluster_scores(mean_unit(crops)[None], texts)[0]


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first, ties in index order: the first k of a stable descending
    argsort, in O(C) rather than O(C log C) (a cluster keeps 2 of 20,000 concepts)."""
    scores = np.asarray(scores)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= scores.size or np.isnan(scores).any():  # NaN: the sort's own order (last), as before
        return np.argsort(-scores, kind="stable")[:k]
    kth = np.partition(scores, scores.size - k)[scores.size - k]  # the k-th largest value
    candidates = np.flatnonzero(scores >= kth)  # every score of the top k, and all ties of the k-th
    order = np.lexsort((candidates, -scores[candidates]))  # by score descending, then index
    return candidates[order[:k]]


def top_concepts(scores: np.ndarray, ids: list[str], texts: list[str], k: int) -> list[dict[str, Any]]:
    """The k best concepts, best first; ties keep concept-set order."""
    order = top_k_indices(scores, k)
    return [
        {"id": ids[j], "text": texts[j], "score": float(scores[j]), "rank": r} for r, j in enumerate(order)
    ]


# ----------------------------------------------------------------------------------------------------------
# I/O runners (one per rule)


def embedder_key(spec: dict[str, Any]) -> str:
    """The embedder spec as canonical JSON, without keys that do not change an embedding."""
    return json.dumps(embedding_spec(spec), sort_keys=True)


def fill_template(template: str, concept: str) -> str:
    """``template`` with ``{}`` replaced by the concept (plain replacement: braces in concepts are text)."""
    return template.replace("{}", concept)


def encode_texts(embedder: Any, texts: list[str], batch_size: int = 256) -> np.ndarray:
    out = [
        embedder.encode_text(texts[i : i + batch_size]).float().numpy()
        for i in range(0, len(texts), batch_size)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, int(embedder.dim)), np.float32)


def run_embed_concepts(
    concepts_json: str,
    out_h5: str,
    embedder: Any,
    spec: dict[str, Any],
    template: str = _HYP["template"],
    batch_size: int = 256,
) -> None:
    data = read_json(concepts_json)
    ids = [c["id"] for c in data["concepts"]]
    texts = [fill_template(template, c["text"]) for c in data["concepts"]]
    emb = encode_texts(embedder, texts, batch_size)
    if emb.shape[0] != len(ids) or not np.isfinite(emb).all():
        raise HypothesizeError(
            f"embedder {embedder.name} returned {emb.shape} (or non-finite values) for "
            f"{len(ids)} concepts of {concepts_json}"
        )
    with atomic_path(out_h5, suffix=".h5.partial") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STR_DT)
        f.create_dataset("embeddings", data=emb, dtype="float32")
        f.attrs.update(
            {
                "embedder": embedder_key(spec),
                "embedder_name": str(embedder.name),
                "template": template,
                "concept_set": data["concept_set"],
                "dim": emb.shape[1],
                "complete": 1,
            }
        )
    log.info("embedded %d concepts of %s (dim %d)", len(ids), data["concept_set"], emb.shape[1])


def read_crops(path: str) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        if not f.attrs.get("complete"):
            raise HypothesizeError(f"{path} is not a complete crops file")
        out = {k: f[k][()] for k in ("neurons", "rows", "probe_index", "boxes", "activation", "embeddings")}
        out["paths"] = [[p.decode() if isinstance(p, bytes) else p for p in row] for row in f["paths"][()]]
        out["attrs"] = dict(f.attrs)
    return out


def run_cluster(
    crops_h5: str,
    out_dir: str,
    cluster: bool = _HYP["cluster"],
    k_max: int = _HYP["k_max"],
    silhouette_floor: float = _HYP["silhouette_floor"],
    min_cluster_size: int = _HYP["min_cluster_size"],
) -> int:
    """One ``clusters/{neuron}.json`` per neuron of ``crops.h5``."""
    c = read_crops(crops_h5)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for s, n in enumerate(c["neurons"]):
        res = cluster_embeddings(
            c["embeddings"][s], k_max, silhouette_floor, min_cluster_size, enabled=cluster
        )
        crops = [
            {
                "rank": r,
                "index": int(c["rows"][s, r]),
                "probe_index": int(c["probe_index"][s, r]),
                "path": c["paths"][s][r],
                "box": [int(v) for v in c["boxes"][s, r]],
                "activation": float(c["activation"][s, r]),
                "cluster": int(res["labels"][r]),
            }
            for r in range(c["rows"].shape[1])
        ]
        write_json(
            os.path.join(out_dir, f"{int(n)}.json"),
            {
                "neuron": int(n),
                "crops": crops,
                "silhouette": res["silhouette"],
                "k": res["k"],
                "clustered": bool(cluster),
                "clusters": res["clusters"],
                "dropped": res["dropped"],
            },
        )
    log.info("clustered %d neurons", len(c["neurons"]))
    return len(c["neurons"])


def read_concept_embeddings(
    concepts_json: str, embeddings_h5: str
) -> tuple[list[str], list[str], np.ndarray, dict[str, Any]]:
    data = read_json(concepts_json)
    with h5py.File(embeddings_h5, "r") as f:
        ids = [i.decode() if isinstance(i, bytes) else i for i in f["ids"][()]]
        emb = f["embeddings"][()]
        attrs = dict(f.attrs)
    if ids != [c["id"] for c in data["concepts"]]:
        raise HypothesizeError(
            f"{embeddings_h5} does not hold the concepts of {concepts_json}; rerun embed_concepts"
        )
    return ids, [c["text"] for c in data["concepts"]], emb, attrs


def run_hypothesize(
    clusters_dir: str,
    crops_h5: str,
    concepts_json: str,
    embeddings_h5: str,
    out_dir: str,
    concepts_per_cluster: int = _HYP["concepts_per_cluster"],
    chunk: int = 256,
) -> int:
    """One ``hypotheses/{neuron}.json`` per clustered neuron: each kept cluster's top concepts."""
    c = read_crops(crops_h5)
    ids, texts, t_emb, t_attrs = read_concept_embeddings(concepts_json, embeddings_h5)
    if (
        json.loads(c["attrs"]["embedder"]) != json.loads(t_attrs["embedder"])
        or t_emb.shape[1] != c["embeddings"].shape[2]
    ):
        raise HypothesizeError(
            f"crops ({crops_h5}) were embedded with {c['attrs']['embedder']} (dim {c['embeddings'].shape[2]}) but "
            f"concepts ({embeddings_h5}) with {t_attrs['embedder']} (dim {t_emb.shape[1]}); rerun both"
        )
    slot = {int(n): s for s, n in enumerate(c["neurons"])}
    concept_set = read_json(concepts_json)["concept_set"]
    files = sorted(Path(clusters_dir).glob("*.json"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    docs, tasks = [], []  # tasks: (doc index, cluster entry, members' embeddings mean)
    for p in files:
        d = read_json(p)
        n = int(d["neuron"])
        if n not in slot:
            raise HypothesizeError(f"neuron {n} of {p} has no crops in {crops_h5}; rerun cluster_crops")
        doc = {"neuron": n, "concept_set": concept_set, "method": "sieve", "clusters": []}
        for cl in d["clusters"]:
            entry = {"cluster": cl["cluster"], "size": cl["size"], "members": cl["members"], "concepts": []}
            doc["clusters"].append(entry)
            tasks.append((entry, mean_unit(c["embeddings"][slot[n], cl["members"]])))
        docs.append(doc)
    k = min(concepts_per_cluster, len(ids))
    for i in range(0, len(tasks), chunk):
        part = tasks[i : i + chunk]
        scores = cluster_scores(np.stack([m for _, m in part]), t_emb)
        for (entry, _), row in zip(part, scores, strict=True):
            entry["concepts"] = top_concepts(row, ids, texts, k)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for doc in docs:
        write_json(os.path.join(out_dir, f"{doc['neuron']}.json"), doc)
    log.info("hypotheses for %d neurons, %d clusters, %d concepts each", len(docs), len(tasks), k)
    return len(docs)
