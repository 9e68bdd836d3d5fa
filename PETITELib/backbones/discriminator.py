"""CvT-GAN patch discriminator on the pair [short, long], written from the published description.

(B, 2, 64, 64, 64) -> (B, 1, 4, 4, 4) raw logits, one per 16^3 patch (use BCE-with-logits or
a least-squares loss directly on them; there is no sigmoid inside). Two strided conv stages
(Conv3d k4 s2 + LeakyReLU, the second with BatchNorm), then two CvT stages (1 block each), then
a Conv3d k3 to one channel. Trained in pre-training, frozen during PEFT.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import nn

from .base import check_volume_batch
from .cvt_blocks import CvTStage, strided_embedding


@dataclass(frozen=True)
class DiscriminatorPreset:
    """Widths of the two conv stages and (width, heads) of the two CvT stages."""

    convs: Tuple[int, int]
    stages: Tuple[Tuple[int, int], Tuple[int, int]]


DISCRIMINATOR_PRESETS: Dict[str, DiscriminatorPreset] = {
    "paper": DiscriminatorPreset(convs=(32, 64), stages=((128, 2), (256, 4))),
    "cpu": DiscriminatorPreset(convs=(8, 16), stages=((32, 2), (64, 4))),
}


class PatchDiscriminator(nn.Module):
    """Patch discriminator: [short, long] (B, 2, 64^3) -> logits (B, 1, 4, 4, 4)."""

    def __init__(self, preset: str) -> None:
        super().__init__()
        size = DISCRIMINATOR_PRESETS[preset]
        (c1, c2), ((w1, h1), (w2, h2)) = size.convs, size.stages
        self.convs = nn.Sequential(
            nn.Conv3d(2, c1, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(c1, c2, 4, stride=2, padding=1), nn.BatchNorm3d(c2), nn.LeakyReLU(0.2),
        )
        self.stage1 = CvTStage(strided_embedding(c2, w1), w1, depth=1, num_heads=h1)
        self.stage2 = CvTStage(strided_embedding(w1, w2), w2, depth=1, num_heads=h2)
        self.head = nn.Conv3d(w2, 1, 3, padding=1)
        self.preset = preset

    def forward(self, short: torch.Tensor, long: torch.Tensor) -> torch.Tensor:
        """short, long: (B, 1, 64, 64, 64) -> patch logits (B, 1, 4, 4, 4)."""
        pair = torch.cat([short, long], dim=1)
        check_volume_batch(pair, channels=2)
        return self.head(self.stage2(self.stage1(self.convs(pair))))


def build_cvtgan_discriminator(preset: str) -> PatchDiscriminator:
    """Build the CvT-GAN patch discriminator for ``preset`` (``"paper"`` or ``"cpu"``)."""
    return PatchDiscriminator(preset)
