"""BitFit (selective): train every bias of a part (Linear, conv and normalisation biases).

UNETR's CNN decoder convolutions have no bias (they feed InstanceNorm), so there BitFit finds
only the output convolution's bias.
"""
from __future__ import annotations

from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle

Config = NoArguments


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Make every base parameter named ``*.bias`` in ``part`` trainable."""
    handle = MethodHandle("bitfit", part)
    for name, parameter in model.named_parameters():
        if name.endswith(".bias") and sites.owns(name):
            handle.train_in_place(name, parameter)
    return handle
