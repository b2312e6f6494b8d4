"""Tiny text-to-image pipelines for tests and the CPU bench, built offline from small configs (random weights).

``save_tiny_pipeline(folder)`` writes a complete Stable-Diffusion-layout diffusers pipeline (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel, a CLIPTokenizer whose byte-level vocab/merges are written here, and an
Euler-ancestral scheduler with SDXL-Turbo's trailing spacing), so the tests go through the very same
``DiffusionPipeline.from_pretrained(folder)`` call as a user's hub id.

Python-source generators for the `python` generator backend (``factory: tinydiffusion:...``):

- ``pattern_generator``: no network at all, an image drawn from (prompt, seed) with a seeded RNG;
- ``killing_generator``: like ``pattern_generator`` but SIGKILLs its own process at the ``kill_at``-th call
  while the file ``flag`` exists (for the resume-after-a-killed-shard tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import torch


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode map (the base alphabet of a byte-level BPE)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def write_tiny_clip_tokenizer(folder: Path) -> int:
    """A CLIP tokenizer with a byte-level vocab and no merges (every character is a token); returns its size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)
    tok.save_pretrained(str(folder))
    return len(vocab)


def build_tiny_pipeline(seed: int = 0, tmp: Path | None = None):
    """A tiny StableDiffusionPipeline (32 x 32 images) with seeded random weights."""
    import tempfile

    from diffusers import (
        AutoencoderKL,
        EulerAncestralDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        sample_size=32,
    )
    with tempfile.TemporaryDirectory() as td:
        tok_dir = Path(tmp or td) / "tokenizer_src"
        vocab_size = write_tiny_clip_tokenizer(tok_dir)
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_pipeline(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Write the tiny pipeline to ``folder`` (loadable with ``DiffusionPipeline.from_pretrained(folder)``)."""
    folder = Path(folder)
    pipe = build_tiny_pipeline(seed)
    pipe.save_pretrained(str(folder))
    return folder


class PatternGenerator:
    """A network-free generator: the image is a function of (prompt, seed) only."""

    def __init__(self, resolution: int = 16, device: torch.device | str = "cpu") -> None:
        self.resolution = int(resolution)
        self.device = torch.device(device)
        self.calls = 0

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        self.calls += 1
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            h = int(hashlib.sha256(f"{prompt}\0{seed}".encode()).hexdigest()[:12], 16)
            g = torch.Generator().manual_seed(h)
            out.append(torch.rand(3, self.resolution, self.resolution, generator=g))
        return torch.stack(out).to(self.device)


def pattern_generator(
    resolution: int = 16, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
):
    return PatternGenerator(resolution, device)


class KillingGenerator(PatternGenerator):
    def __init__(self, resolution: int, flag: str, kill_at: int, device: torch.device | str = "cpu") -> None:
        super().__init__(resolution, device)
        self.flag = flag
        self.kill_at = int(kill_at)

    def generate(self, prompts: list[str], seeds: list[int]) -> torch.Tensor:
        if self.calls + 1 >= self.kill_at and os.path.exists(self.flag):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().generate(prompts, seeds)


def killing_generator(flag: str, kill_at: int = 2, resolution: int = 16, device: torch.device | str = "cpu"):
    return KillingGenerator(resolution, flag, kill_at, device)
