"""Bottleneck adapters (Pfeiffer placement): ``h + up(gelu(down(h)))`` after each feed-forward layer.

Sites come from the backbone (``PartSites.adapters``): after the MLP of every transformer
block (Linear down/up on (B, N, C) tokens) and after every residual conv block of a CNN part
(1x1x1 Conv3d down/up on (B, C, D, H, W)). Bottleneck width = max(1, C // rf). Only the
up-projection starts at zero (weights and bias), so the model is unchanged at first while the
down-projection is a normal random layer; its gradient is exactly zero until the
up-projection has moved (one optimizer step). The adapter is attached to the block it follows
(see :mod:`.layers`). Not mergeable (it is non-linear).
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import PartSites
from .configs import AdapterConfig
from .handles import MethodHandle
from .layers import OutputMethod

Config = AdapterConfig


class BottleneckAdapter(OutputMethod):
    """Residual bottleneck C -> C // rf -> C on tokens (Linear) or volumes (1x1x1 Conv3d)."""

    def __init__(self, channels: int, bottleneck: int, layout: str) -> None:
        super().__init__()
        if layout == "tokens":
            self.down, self.up = nn.Linear(channels, bottleneck), nn.Linear(bottleneck, channels)
        else:
            self.down, self.up = nn.Conv3d(channels, bottleneck, 1), nn.Conv3d(bottleneck, channels, 1)
        self.act = nn.GELU()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, block: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y: the ``block``'s (B, N, C) or (B, C, D, H, W) output -> same shape."""
        return y + self.up(self.act(self.down(y)))


def inject(model: nn.Module, part: str, sites: PartSites, config: AdapterConfig) -> MethodHandle:
    """Attach a bottleneck adapter (slot ``adapter``) after every adapter site of ``part``."""
    handle = MethodHandle("adapter", part)
    for site in sites.adapters:
        layer = BottleneckAdapter(site.channels, max(1, site.channels // config.rf), site.layout)
        handle.attach(model, site.module, "adapter", layer)
    return handle
