"""LayerNorm tuning (selective): train the affine parameters of every normalisation layer of a part.

"Normalisation layer" = LayerNorm, GroupNorm, BatchNorm and affine InstanceNorm. UNETR's CNN
decoder uses InstanceNorm without affine parameters, so there this method finds nothing.
"""
from __future__ import annotations

from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle

Config = NoArguments
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Make the weight and bias of every affine norm layer in ``part`` trainable."""
    handle = MethodHandle("layernorm", part)
    for name, module in model.named_modules():
        if isinstance(module, NORM_TYPES) and sites.owns(name):
            for attr in ("weight", "bias"):
                parameter = getattr(module, attr, None)
                if isinstance(parameter, nn.Parameter):
                    handle.train_in_place(f"{name}.{attr}", parameter)
    return handle
