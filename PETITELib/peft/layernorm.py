"""LayerNorm tuning (selective): train the weight and bias of every LayerNorm of a part.

Only LayerNorm layers: the CvT-GAN's BatchNorms (in the q/k/v convolutional projections) stay
frozen; with LayerNorms alone the count is exactly the paper's 0.041% for CvT-GAN. UNETR's CNN
decoder has only InstanceNorms without affine parameters, so there this method finds nothing.
"""
from __future__ import annotations

from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle

Config = NoArguments
NORM_TYPES = (nn.LayerNorm,)


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Make the weight and bias of every LayerNorm in ``part`` trainable."""
    handle = MethodHandle("layernorm", part)
    for name, module in model.named_modules():
        if isinstance(module, NORM_TYPES) and sites.owns(name):
            for attr in ("weight", "bias"):
                parameter = getattr(module, attr, None)
                if isinstance(parameter, nn.Parameter):
                    handle.train_in_place(f"{name}.{attr}", parameter)
    return handle
