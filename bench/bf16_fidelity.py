"""What measuring the target model in bfloat16 changes (issue 16: why ``models.*.dtype`` defaults to float32).

A simulation on the CPU: each layer's float32 probe activations are rounded to bfloat16 (8 bits of mantissa,
what a bf16 forward pass stores at the hooked layer; a real bf16 pass also rounds every earlier layer, so it
moves at least this much), and the same analysis runs on both copies. Per layer it counts:

- ``ties``: neurons whose top-1% threshold (the 99th percentile, Verify's threshold) is shared by more probe
  images after rounding than before (bf16 keeps 256 distinct values per power of two);
- ``top1pct_changed``: neurons whose set of probe images above the threshold changes, and the median
  relative move of the threshold;
- ``selection_changed``: neurons whose Select decision (default rule, tau 10) flips;
- ``clip_dissect_labels_changed``: neurons whose CLIP-Dissect label (SoftWPMI over the top 100 images, the
  planted world's concept set and embedder, ``sieve.evaluate.clip_dissect``) changes.

Layers: the planted world's (``source: synthetic``, 600 probe scenes of config.yaml) and, when
``--trained`` names the ``--keep`` folder of ``bench/trained_select.py``, the trained world's ResNet and ViT
penultimate layers probed on the same scenes.

    python bench/bf16_fidelity.py --trained /tmp/trained_select_keep   # -> bench/results/bf16_fidelity.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

from sieve.activations import read_activations  # noqa: E402
from sieve.backends.embedders import load_embedder  # noqa: E402
from sieve.backends.imagesets import open_image_set  # noqa: E402
from sieve.backends.models import load_model  # noqa: E402
from sieve.concepts import synthetic_concepts  # noqa: E402
from sieve.evaluate.clip_dissect import _clip_transform, labels_from_scores, soft_wpmi, top_rows  # noqa: E402
from sieve.io import write_json  # noqa: E402
from sieve.probe import run_probe  # noqa: E402
from sieve.select import select_neurons, selectivity  # noqa: E402

TAU = 10.0
TOP_IMAGES = 100


def bf16_round(acts: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float64: the values a bf16 pass would hand over."""
    return torch.from_numpy(np.asarray(acts, dtype=np.float32)).to(torch.bfloat16).double().numpy()


def compare(acts: np.ndarray, image_emb: np.ndarray, text_emb: np.ndarray) -> dict[str, Any]:
    """The float32 analysis against the bf16-rounded one, neuron by neuron (see the module docstring)."""
    a32 = np.asarray(acts, dtype=np.float64)
    a16 = bf16_round(acts)
    n = a32.shape[1]
    thr32, thr16 = np.percentile(a32, 99, axis=0), np.percentile(a16, 99, axis=0)
    at32 = (a32 == thr32).sum(axis=0)
    at16 = (a16 == thr16).sum(axis=0)
    above32, above16 = a32 > thr32, a16 > thr16
    set_changed = (above32 != above16).any(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(thr16 - thr32) / np.abs(thr32)
    rel = rel[np.isfinite(rel)]
    s32, s16 = selectivity(a32), selectivity(a16)
    sel32, sel16 = select_neurons(s32, TAU), select_neurons(s16, TAU)
    lab32 = labels_from_scores(soft_wpmi(image_emb, text_emb, top_rows(a32, TOP_IMAGES)))
    lab16 = labels_from_scores(soft_wpmi(image_emb, text_emb, top_rows(a16, TOP_IMAGES)))
    changed = int((lab32 != lab16).sum())
    return {
        "n_neurons": n,
        "distinct_values_float32": int(np.mean([len(np.unique(a32[:, c])) for c in range(n)])),
        "distinct_values_bf16": int(np.mean([len(np.unique(a16[:, c])) for c in range(n)])),
        "ties_at_threshold_increased": int((at16 > at32).sum()),
        "top1pct_changed": int(set_changed.sum()),
        "threshold_relative_move_median": float(np.median(rel)) if rel.size else None,
        "selected_float32": int(sel32.sum()),
        "selection_changed": int((sel32 != sel16).sum()),
        "clip_dissect_labels_changed": changed,
        "clip_dissect_labels_changed_share": round(changed / n, 4),
    }


def embed_probe(probe: Any, embedder: Any, batch: int = 64) -> np.ndarray:
    """Every probe image, whole, with CLIP-Dissect's own preprocessing geometry."""
    tf = _clip_transform(int(getattr(embedder, "image_size", 224)))
    out = []
    for s in range(0, len(probe), batch):
        x = torch.stack([tf(probe.load(i)) for i in range(s, min(s + batch, len(probe)))])
        out.append(embedder.encode_images(x).float().numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=600, help="planted-world probe scenes (seed 0)")
    ap.add_argument("--trained", default=None, help="bench/trained_select.py's --keep folder (optional)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bf16_fidelity.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    probe = open_image_set("synthetic", {"kind": "synthetic", "n_images": args.n_images, "seed": 0})
    embedder = load_embedder({"source": "synthetic"})
    texts = synthetic_concepts("default")
    image_emb = embed_probe(probe, embedder)
    text_emb = embedder.encode_text(texts).float().numpy()
    layers: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        h5 = os.path.join(tmp, "planted.h5")
        run_probe(
            load_model("synthetic", {"source": "synthetic", "layer": "penultimate"}),
            probe,
            h5,
            progress=False,
        )
        layers["planted world (penultimate)"] = read_activations(h5)["activations"]
    if args.trained:
        for name, role in (("resnet", "penultimate"), ("vit", "penultimate")):
            path = Path(args.trained) / f"{name}_{role}_{args.n_images}.h5"
            layers[f"trained {name} ({role})"] = read_activations(str(path))["activations"]
    result = {
        "what": "float32 probe activations against the same rounded to bfloat16 (a simulation: see the script)",
        "n_probe_images": args.n_images,
        "tau": TAU,
        "clip_dissect_top_images": TOP_IMAGES,
        "n_concepts": len(texts),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "layers": {name: compare(acts, image_emb, text_emb) for name, acts in layers.items()},
    }
    write_json(args.out, result)
    for name, row in result["layers"].items():
        print(name, row)


if __name__ == "__main__":
    main()
