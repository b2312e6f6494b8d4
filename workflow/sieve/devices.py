"""Device and dtype resolution shared by every GPU rule."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


class DeviceError(RuntimeError):
    pass


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: the GPU the job was given (``CUDA_VISIBLE_DEVICES`` is respected by CUDA itself), else the
    CPU with a warning. ``cuda`` without a usable GPU is an error. ``cpu`` is always the CPU."""
    if requested not in {"auto", "cpu", "cuda"} and not requested.startswith("cuda:"):
        raise DeviceError(f"config key 'device': unknown device {requested!r} (use auto, cpu or cuda)")
    if requested == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if requested.startswith("cuda"):
        if not available:
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            raise DeviceError(
                f"config key 'device' is {requested!r} but no CUDA GPU is usable in this job "
                f"(CUDA_VISIBLE_DEVICES={visible!r}, torch {torch.__version__}, "
                f"built with CUDA {torch.version.cuda}). Use 'device: auto' to fall back to the CPU."
            )
        return torch.device(requested)
    if available:
        return torch.device("cuda")
    log.warning("device: auto found no CUDA GPU; running on the CPU (this is slow for real models)")
    return torch.device("cpu")


def resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto`` is bfloat16 on a GPU that supports it, float32 otherwise."""
    if requested == "float32":
        return torch.float32
    if requested == "bfloat16":
        return torch.bfloat16
    if requested == "float16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32
