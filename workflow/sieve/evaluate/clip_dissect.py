"""The CLIP-Dissect baseline (Oikarinen & Weng, ICLR 2023), run in the same harness as SIEVE.

CLIP-Dissect labels every neuron of a layer with the concept of the set that best matches its most activating
probe images, scored by SoftWPMI, exactly as in the published code (``similarity.soft_wpmi``):

- image x_i is embedded whole (CLIP's own resize + centre crop of the raw probe image, no crop of a hot spot),
  concept t raw (no template); both L2-normalised, cos(x, t) = x . t;
- P(t | x) = softmax over the concepts of ``alpha * cos(x, t)`` (alpha = 10);
- a neuron n's top ``K`` probe images (K = 100, by pooled activation, descending, ties by probe order) get
  linearly decreasing weights p_j = p_start - (j / K) (p_start - p_end), j = 0..K-1 (0.998 down towards 0.97,
  the published ``p_in_examples``);
- log P(t | n) = sum_j log(1 + p_j (P(t | x_j) - 1) + 1e-7);
- log P(t) = logsumexp over all neurons of the layer of log P(t | n) - log(#neurons);
- score(n, t) = log P(t | n) - lambda log P(t) (lambda = 1); label(n) = argmax_t score (ties: first concept).

:func:`soft_wpmi` is the pure function (arrays in, array out); :func:`run_embed_probe_images` and
:func:`run_clip_dissect` are the two rules' runners. The labels go through the same Verify stage as SIEVE's
hypotheses: ``hypotheses/{neuron}.json`` has the same layout (one cluster, ``cluster: 0``, with the label).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..config import with_defaults
from ..images import center_crop, resize_short, to_chw, to_rgb
from ..io import atomic_path, read_csv, read_json, write_csv, write_json

log = logging.getLogger(__name__)

P_START = 0.998
P_END = 0.97
MIN_PROB = 1e-7
LABEL_COLUMNS = ["neuron", "label", "concept_id", "score", "selected"]
# The published constants above; the settings below default to the schema's (hypothesize.clip_dissect).
_CD = with_defaults(None, "hypothesize.clip_dissect")


class BaselineError(ValueError):
    """Inconsistent inputs of a baseline: the message names the file, the neuron or the setting."""


# ----------------------------------------------------------------------------------------------------------
# pure functions


def top_rows(acts: np.ndarray, k: int) -> np.ndarray:
    """acts [N, C] -> [C, min(k, N)] row indices of each neuron's highest activations, descending; equal
    values keep the earlier row (a stable sort)."""
    acts = np.asarray(acts)
    k = min(int(k), acts.shape[0])
    order = np.argsort(-acts.T, axis=1, kind="stable")
    return order[:, :k].astype(np.int64)


def example_weights(k: int, p_start: float = P_START, p_end: float = P_END) -> np.ndarray:
    """The published ``p_in_examples``: p_j = p_start - j / k (p_start - p_end), j = 0..k-1."""
    return p_start - np.arange(k, dtype=np.float64) / k * (p_start - p_end)


@torch.inference_mode()
def soft_wpmi(
    image_emb: np.ndarray | torch.Tensor,
    text_emb: np.ndarray | torch.Tensor,
    top: np.ndarray,
    alpha: float = 10.0,
    lam: float = 1.0,
    p_start: float = P_START,
    p_end: float = P_END,
    max_elements: int = 1 << 24,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """SoftWPMI scores [C_neurons, T] (see the module docstring).

    ``image_emb`` [M, D] embeddings of the probe images that appear in ``top``; ``text_emb`` [T, D];
    ``top`` [C_neurons, K] indices into ``image_emb`` of each neuron's top images, best first. Embeddings are
    L2-normalised here. Memory stays bounded for any M x T: the (neuron, rank, image) triples are processed in
    image order, ``max_elements`` // T at a time, and P(t | x) is computed only for the images of a chunk.
    float64 on the CPU, float32 on a GPU."""
    dev = torch.device(device)
    dt = torch.float64 if dev.type == "cpu" else torch.float32
    x = torch.as_tensor(np.asarray(image_emb), dtype=dt, device=dev)
    t = torch.as_tensor(np.asarray(text_emb), dtype=dt, device=dev)
    if x.dim() != 2 or t.dim() != 2 or x.shape[1] != t.shape[1]:
        raise BaselineError(
            f"image embeddings {tuple(x.shape)} and concept embeddings {tuple(t.shape)} do not "
            "share one embedding dimension"
        )
    top = np.asarray(top, dtype=np.int64)
    if top.ndim != 2 or top.shape[1] == 0 or top.shape[0] == 0:
        raise BaselineError(f"top-image index must be [neurons > 0, K > 0], got {top.shape}")
    if top.min() < 0 or top.max() >= x.shape[0]:
        raise BaselineError(f"top-image index out of range for {x.shape[0]} image embeddings")
    x = torch.nn.functional.normalize(x, dim=1)
    t = torch.nn.functional.normalize(t, dim=1)
    n_neurons, k = top.shape
    weights = torch.as_tensor(example_weights(k, p_start, p_end), dtype=dt, device=dev)
    flat_img = top.reshape(-1)
    flat_n = torch.as_tensor(np.repeat(np.arange(n_neurons), k), device=dev)
    flat_j = torch.as_tensor(np.tile(np.arange(k), n_neurons), device=dev)
    order = np.argsort(flat_img, kind="stable")
    chunk = max(1, int(max_elements) // t.shape[0])
    out = torch.zeros((n_neurons, t.shape[0]), dtype=dt, device=dev)
    for s in range(0, len(order), chunk):
        sel = order[s : s + chunk]
        imgs, inv = np.unique(flat_img[sel], return_inverse=True)
        p_cond = torch.softmax(alpha * (x[torch.as_tensor(imgs, device=dev)] @ t.T), dim=1)  # P(t | x) [u, T]
        sel_t = torch.as_tensor(sel, device=dev)
        p = weights[flat_j[sel_t]][:, None]
        term = torch.log(1 + p * (p_cond[torch.as_tensor(inv, device=dev)] - 1) + MIN_PROB)
        out.index_add_(0, flat_n[sel_t], term)
    log_p_t = torch.logsumexp(out, dim=0, keepdim=True) - math.log(n_neurons)
    return (out - lam * log_p_t).cpu().double().numpy()


def labels_from_scores(scores: np.ndarray) -> np.ndarray:
    """argmax over concepts per neuron (ties: the first concept of the set)."""
    return np.argmax(np.asarray(scores), axis=1)


# ----------------------------------------------------------------------------------------------------------
# I/O runners


def _clip_transform(side: int):
    """CLIP's own preprocessing geometry: short side to ``side`` (bicubic), centre crop, [0, 1] tensor."""

    def apply(img: Any) -> torch.Tensor:
        img = resize_short(to_rgb(img), side, "bicubic")
        return torch.from_numpy(to_chw(center_crop(img, side)))

    return apply


class _WholeImages(torch.utils.data.Dataset):
    def __init__(self, probe: Any, probe_indices: list[int], side: int) -> None:
        self.probe, self.indices, self.tf = probe, probe_indices, _clip_transform(side)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        pi = self.indices[i]
        try:
            return i, self.tf(self.probe.load(pi)), ""
        except Exception as exc:  # noqa: BLE001 - reported with the image's path
            return i, None, f"{self.probe.paths[pi]} (probe index {pi}): {exc}"


def _collate(batch: list) -> list:
    return batch


def run_embed_probe_images(
    activations_h5: str,
    probe: Any,
    embedder: Any,
    spec: dict[str, Any],
    out_h5: str,
    top_images: int = _CD["top_images"],
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, Any]:
    """Embed, whole, every probe image that is among the ``top_images`` best of any neuron of the layer.

    ``image_embeddings.h5``: ``rows`` [M] (rows of ``activations.h5``), ``probe_index`` [M], ``embeddings``
    [M, D] float32 L2-normalised, ``top`` [C, K] indices into ``rows`` of each neuron's top images; attributes
    ``top_images`` (K) and ``n_probe_images`` (so that a later, larger ``top_images`` is recognised as stale)."""
    from ..activations import read_activations
    from ..backends.embedders import embedder_image_size
    from ..hypothesize import embedder_key

    a = read_activations(activations_h5)
    acts = a["activations"]
    if acts.shape[0] == 0:
        raise BaselineError(f"{activations_h5} holds no image")
    top = top_rows(acts, top_images)
    rows = np.unique(top)
    pos = np.full(acts.shape[0], -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    probe_index = a["probe_index"][rows]
    if len(probe) and int(probe_index.max()) >= len(probe):
        raise BaselineError(
            f"{activations_h5} names probe image {int(probe_index.max())} but probe {probe.name!r} "
            f"has {len(probe)} images; rerun the probe"
        )
    side = embedder_image_size(embedder)
    emb = np.full((len(rows), int(embedder.dim)), np.nan, dtype=np.float32)
    loader = torch.utils.data.DataLoader(
        _WholeImages(probe, [int(i) for i in probe_index], side),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    from tqdm import tqdm

    for batch in tqdm(loader, desc="probe images", unit="batch", mininterval=5.0):
        for _, x, err in batch:
            if x is None:
                raise BaselineError(f"probe image {err} cannot be read any more")
        idx = [i for i, _, _ in batch]
        z = embedder.encode_images(torch.stack([x for _, x, _ in batch])).float().numpy()
        emb[idx] = z
    if not np.isfinite(emb).all():
        raise BaselineError("some probe images got no embedding (non-finite values)")
    with atomic_path(out_h5, suffix=".h5.partial") as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("rows", data=rows.astype(np.int64))
        f.create_dataset("probe_index", data=probe_index.astype(np.int64))
        f.create_dataset("embeddings", data=emb)
        f.create_dataset("top", data=pos[top])
        f.attrs.update(
            {
                "embedder": embedder_key(spec),
                "embedder_name": str(embedder.name),
                "top_images": int(top.shape[1]),
                "n_neurons": int(acts.shape[1]),
                "n_probe_images": int(acts.shape[0]),
                "image_side": side,
                "complete": 1,
            }
        )
    log.info("embedded %d whole probe images (top %d of %d neurons)", len(rows), top.shape[1], acts.shape[1])
    return {"n_images": len(rows), "top_images": int(top.shape[1])}


def read_image_embeddings(path: str) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        if not f.attrs.get("complete"):
            raise BaselineError(f"{path} is not a complete image-embeddings file; rerun embed_probe_images")
        out = {k: f[k][()] for k in ("rows", "probe_index", "embeddings", "top")}
        out["attrs"] = dict(f.attrs)
    return out


def run_clip_dissect(
    image_embeddings_h5: str,
    select_summary: str,
    concepts_json: str,
    embeddings_h5: str,
    out_dir: str,
    out_labels: str,
    alpha: float = float(_CD["alpha"]),
    lam: float = float(_CD["lambda"]),
    top_images: int = _CD["top_images"],
    device: str = "cpu",
) -> dict[str, Any]:
    """Label every neuron with SoftWPMI; ``hypotheses/{neuron}.json`` for the selected ones (the neurons SIEVE
    describes, so both methods are verified on the same neurons), ``labels.csv`` for all."""
    from ..hypothesize import read_concept_embeddings

    img = read_image_embeddings(image_embeddings_h5)
    ids, texts, t_emb, t_attrs = read_concept_embeddings(concepts_json, embeddings_h5)
    if json.loads(img["attrs"]["embedder"]) != json.loads(t_attrs["embedder"]):
        raise BaselineError(
            f"probe images ({image_embeddings_h5}) were embedded with {img['attrs']['embedder']} "
            f"but concepts ({embeddings_h5}) with {t_attrs['embedder']}; rerun both"
        )
    if t_attrs.get("template", "{}") != "{}":
        raise BaselineError(
            f"{embeddings_h5} embeds concepts with template {t_attrs.get('template')!r}; "
            "CLIP-Dissect uses the raw concept text"
        )
    top = img["top"]
    n_probe = int(img["attrs"].get("n_probe_images", top.shape[1]))  # a probe smaller than K: all its images
    if top.shape[1] < min(int(top_images), n_probe):
        raise BaselineError(
            f"{image_embeddings_h5} keeps {top.shape[1]} top images per neuron, "
            f"hypothesize.clip_dissect.top_images is {top_images}; rerun embed_probe_images"
        )
    top = top[:, :top_images]
    sel = read_json(select_summary)
    n_neurons = int(sel.get("n_neurons", len(sel["neurons"])))
    if top.shape[0] != n_neurons:
        raise BaselineError(
            f"{image_embeddings_h5} has {top.shape[0]} neurons but {select_summary} has "
            f"{n_neurons}; rerun embed_probe_images"
        )
    scores = soft_wpmi(img["embeddings"], t_emb, top, alpha=alpha, lam=lam, device=device)
    best = labels_from_scores(scores)
    concept_set = read_json(concepts_json)["concept_set"]
    selected = {int(k) for k, v in sel["neurons"].items() if v.get("selected")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    for n in sorted(selected):
        j = int(best[n])
        write_json(
            out / f"{n}.json",
            {
                "neuron": n,
                "concept_set": concept_set,
                "method": "clip_dissect",
                "clusters": [
                    {
                        "cluster": 0,
                        "size": int(top.shape[1]),
                        "members": list(range(int(top.shape[1]))),
                        "concepts": [
                            {"id": ids[j], "text": texts[j], "score": float(scores[n, j]), "rank": 0}
                        ],
                    }
                ],
            },
        )
    write_csv(
        out_labels,
        LABEL_COLUMNS,
        [
            {
                "neuron": n,
                "label": texts[j],
                "concept_id": ids[j],
                "score": f"{scores[n, j]:.6g}",
                "selected": int(n in selected),
            }
            for n, j in enumerate(map(int, best))
        ],
    )
    log.info(
        "CLIP-Dissect: labelled %d neurons (%d selected) with %d concepts, top %d images, alpha %s, "
        "lambda %s",
        n_neurons,
        len(selected),
        len(ids),
        top.shape[1],
        alpha,
        lam,
    )
    return {"n_neurons": n_neurons, "n_selected": len(selected)}


def read_labels(path: str | os.PathLike[str]) -> dict[int, str]:
    """``labels.csv`` -> neuron -> label text."""
    return {int(r["neuron"]): r["label"] for r in read_csv(path)}
