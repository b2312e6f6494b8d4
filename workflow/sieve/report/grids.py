"""The neuron grids the report shows: one image per selected neuron, its top probe images with their crop boxes,
one row block per cluster (dropped clusters last, in grey).

Drawn from Hypothesize's ``clusters/{neuron}.json`` and ``crops.h5`` (the boxes, the preprocessing the model
saw) and the probe's image set, each probe image loaded once.
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

from ..io import atomic_path, read_json

log = logging.getLogger(__name__)

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60)]


class _ThumbDataset:
    def __init__(self, probe: Any, pre: Any, indices: list[int], tile: int) -> None:
        self.probe, self.pre, self.indices, self.tile = probe, pre, indices, tile

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None]:
        import torch.nn.functional as F

        pi = self.indices[i]
        try:
            x = self.pre.geometric(self.probe.load(pi))
        except Exception:  # noqa: BLE001 - drawn as a grey tile
            return pi, None
        x = F.interpolate(x[None], size=(self.tile, self.tile), mode="bilinear", antialias=True,
                          align_corners=False)[0]
        return pi, (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def draw_grid(doc: dict[str, Any], thumbs: dict[int, np.ndarray], input_size: int, tile: int = 96,
              per_row: int = 10) -> Any:
    """One neuron's top images with their boxes, one row block per cluster (dropped clusters last)."""
    from PIL import Image, ImageDraw

    crops = doc["crops"]
    groups = [(f"cluster {c['cluster']} ({c['size']})", c["cluster"], c["members"]) for c in doc["clusters"]]
    groups += [(f"dropped {c['cluster']} ({c['size']})", c["cluster"], c.get("members", [])) for c in doc["dropped"]]
    groups = [g for g in groups if g[2]]
    label_w, pad = 110, 4
    n_lines = sum(math.ceil(len(m) / per_row) for _, _, m in groups) or 1
    widest = max([min(len(m), per_row) for _, _, m in groups] or [1])
    width = max(label_w + widest * (tile + pad) + pad, 220)
    height = n_lines * (tile + pad) + pad + 18
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((pad, 3), f"neuron {doc['neuron']}: k = {doc['k']}", fill=(0, 0, 0))
    y = 18 + pad
    scale = tile / float(input_size)
    for label, cid, members in groups:
        colour = PALETTE[cid % len(PALETTE)]
        draw.text((pad, y + tile // 2 - 6), label, fill=colour if not label.startswith("dropped") else (120, 120, 120))
        for j, r in enumerate(members):
            if j and j % per_row == 0:
                y += tile + pad
            x = label_w + (j % per_row) * (tile + pad)
            crop = crops[r]
            arr = thumbs.get(int(crop["probe_index"]))
            im = Image.fromarray(arr) if arr is not None else Image.new("RGB", (tile, tile), (160, 160, 160))
            img.paste(im, (x, y))
            x0, y0, x1, y1 = (v * scale for v in crop["box"])
            draw.rectangle([x + x0, y + y0, x + max(x0, x1 - 1), y + max(y0, y1 - 1)], outline=colour, width=2)
            draw.text((x + 2, y + 1), str(r), fill=(255, 255, 255))
        y += tile + pad
    return img


def run_grids(clusters_dir: str, crops_h5: str, probe: Any, out_dir: str, tile: int = 96,
              num_workers: int = 0) -> int:
    """One ``grids/{neuron}.png`` per clustered neuron (each probe image loaded once)."""
    import torch

    from ..backends.models import Preprocess

    with h5py.File(crops_h5, "r") as f:
        pre = Preprocess.coerce(json.loads(f.attrs["preprocess"]))
    docs = [read_json(p) for p in sorted(Path(clusters_dir).glob("*.json"))]
    indices = sorted({int(c["probe_index"]) for d in docs for c in d["crops"]})
    thumbs: dict[int, np.ndarray] = {}
    loader = torch.utils.data.DataLoader(_ThumbDataset(probe, pre, indices, tile), batch_size=16,
                                         num_workers=num_workers, collate_fn=_as_list)
    for batch in loader:
        for pi, arr in batch:
            if arr is None:
                log.warning("grid: probe image %d cannot be read; drawn grey", pi)
            else:
                thumbs[pi] = arr
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for d in docs:
        img = draw_grid(d, thumbs, pre.input_size, tile)
        with atomic_path(os.path.join(out_dir, f"{d['neuron']}.png"), suffix=".png") as tmp:
            img.save(tmp, format="PNG", optimize=True)
    log.info("drew %d grids", len(docs))
    return len(docs)


def _as_list(batch: list) -> list:
    return batch
