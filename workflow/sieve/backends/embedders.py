"""CLIP-like embedders (an image side and a text side in one space), keyed by ``source``.

Contract for every builder registered in ``EMBEDDERS``: ``builder(spec: dict, device) -> Embedder``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from . import Registry

EMBEDDERS = Registry("embedder")


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] float in [0, 1] (any H, W) -> [B, dim] float32, L2-normalised, on the CPU."""
        ...

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """N strings -> [N, dim] float32, L2-normalised, on the CPU."""
        ...


def load_embedder(spec: dict[str, Any], device: torch.device | str = "cpu") -> Embedder:
    """The one entry point: config ``embedder:`` spec -> Embedder."""
    return EMBEDDERS.get(spec.get("source"))(spec, torch.device(device))
