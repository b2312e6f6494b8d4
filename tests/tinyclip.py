"""A tiny open_clip model for tests: its JSON architecture config and random weights, saved locally and
loaded through the very same function (`sieve.backends.embedders.load_open_clip`) as a hub tag."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_ARCH = "sieve-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def make_tiny_clip(folder: Path, seed: int = 0, arch: str = TINY_ARCH) -> dict:
    """Write ``arch.json`` and ``weights.pt`` (a random state dict) into ``folder``; return the ``embedder:``
    config that loads them (``source: open_clip``, ``arch``, ``model_config``, ``pretrained``)."""
    import open_clip

    from sieve.backends.embedders import register_model_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "arch.json"
    cfg_path.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    register_model_config(arch, cfg_path)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    return {"source": "open_clip", "arch": arch, "model_config": str(cfg_path), "pretrained": str(weights)}


class ProjectionEmbedder:
    """A deterministic CLIP-like embedder for the ``python`` source: images -> colour statistics projected
    by a fixed random matrix, text -> a vector seeded by the text's hash. Fast, no weights."""

    def __init__(self, dim: int = 16, seed: int = 0, device: torch.device | str = "cpu") -> None:
        g = torch.Generator().manual_seed(seed)
        self.name = f"projection-{dim}"
        self.dim = dim
        self.image_size = 16
        self.proj = torch.randn(12, dim, generator=g)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().cpu()
        stats = torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3)), x.amin((2, 3))], dim=1)
        return torch.nn.functional.normalize(stats @ self.proj, dim=-1)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        import hashlib

        rows = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode("utf-8")).hexdigest()[:8], 16)
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def projection_embedder(
    dim: int = 16, seed: int = 0, device: torch.device | str = "cpu"
) -> ProjectionEmbedder:
    return ProjectionEmbedder(dim, seed, device)


def not_an_embedder():
    return object()
