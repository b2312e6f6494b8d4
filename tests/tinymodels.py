"""Tiny models for tests, loaded through the `python` model source (`factory: tinymodels:...`)."""

from __future__ import annotations

import torch
from torch import nn


class HotSpotCNN(nn.Module):
    """A small CNN with random (seeded) weights, ResNet-like names: ``layer4`` gives an 8-channel 4 x 4 map."""

    def __init__(self, channels: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.layer4 = nn.Sequential(nn.Conv2d(8, channels, 3, stride=2, padding=1), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, 3)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(torch.relu(self.stem(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def hotspot_cnn(channels: int = 8, seed: int = 0):
    return HotSpotCNN(channels, seed), {"input_size": 16, "resize": 16, "mean": [0.5] * 3, "std": [0.5] * 3}


def hotspot_cnn_resized(channels: int = 16, seed: int = 0):
    """HotSpotCNN behind an ImageNet-style preprocessing at toy size: short side to 37 px, centre crop 32, the
    ImageNet mean and std (the probe's decode tests compare host and device geometry on it)."""
    return HotSpotCNN(channels, seed), {"input_size": 32, "resize": 37}


def tiny_torchvision_vit():
    """torchvision's VisionTransformer at toy size: 32 px, 16 px patches (2 x 2 grid), width 16."""
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4
    )
    return vit, {"input_size": 32, "resize": 32}


class MLPOnly(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(3 * 16 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flat(x))


def mlp_only():
    return MLPOnly(), {"input_size": 16, "resize": 16}
