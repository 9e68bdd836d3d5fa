"""Full-resolution tuning (selective, our addition): train outright the convolutions that read
or write the full-resolution volume.

A U-shaped denoiser's top level sees every voxel: a scanner's resolution, sampling and noise
texture meet the network there first. In the cpu-preset UNETR base nearly all of Full-FT's gain
on a new scanner lives in these few layers (UNETR: ``encoder1``, ``decoder2``, ``out``; 0.12 %
of its parameters), while its ViT barely shapes the output; docs/peft.md has the measurement.
Each backbone names the layers in its :class:`~PETITELib.backbones.base.PartSites`.
"""
from __future__ import annotations

from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle

Config = NoArguments


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Make every parameter of the part's full-resolution layers (``sites.full_resolution``) trainable."""
    handle = MethodHandle("fullres", part)
    prefixes = tuple(f"{layer}." for layer in sites.full_resolution)
    for name, parameter in model.named_parameters():
        if prefixes and name.startswith(prefixes):
            handle.train_in_place(name, parameter)
    return handle
