"""Text-to-image generators, keyed by ``source``.

Contract for every builder registered in ``GENERATORS``: ``builder(spec: dict, device, dtype) -> Generator``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from . import Registry

GENERATORS = Registry("generator")


@runtime_checkable
class Generator(Protocol):
    resolution: int

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        """One image per (prompt, seed) -> [B, 3, R, R] float in [0, 1], on the generator's device.
        The same (prompt, seed) always gives the same image."""
        ...


def load_generator(spec: dict[str, Any], device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> Generator:
    """The one entry point: config ``generator:`` spec -> Generator."""
    return GENERATORS.get(spec.get("source"))(spec, torch.device(device), dtype)
