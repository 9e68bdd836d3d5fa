"""SSF (scale and shift features): ``y * gamma + beta`` per channel after chosen layers.

Sites come from the backbone (``PartSites.ssf``): in a ViT after every norm layer, attention
output projection and MLP output layer (each norm gets its own pair, so a block's two norms
have two pairs); in a CNN after every norm and every convolution that does not feed a norm.
These are the PETITE paper's sites ("after every MLP, MHSA and LayerNorm module"); the SSF
paper also scales after the q/k/v projection and the first MLP layer, which the paper's
Table 1 counts argue against (docs/peft-methods.md compares both).
gamma starts at 1 and beta at 0 (identity). One class per kind of layer:

- :class:`SSFNorm` (after a LayerNorm, InstanceNorm or BatchNorm) composes into the norm's
  affine parameters (weight * gamma, bias * gamma + beta; gamma and beta alone for a norm
  without them), so the input is normalised once and autograd keeps no more than the norm alone;
- :class:`SSFOutput` (after a Linear or convolution) scales and shifts the output; it keeps the
  output, which gamma's gradient needs.

Mergeable: a Linear or conv gets its output channels scaled and its bias shifted (a bias is
created if it had none), a norm gets its affine parameters scaled and shifted (created for a
non-affine InstanceNorm); unmerge divides and subtracts again and removes what merge created.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle
from .layers import CONV_TYPES, NORM_TYPES, AffineMethod, OutputMethod

Config = NoArguments
TOKEN_LAYERS = (nn.Linear, nn.LayerNorm)  # channel axis last: (B, N, C)


def output_channels(layer: nn.Module) -> int:
    """Number of output channels of a Linear, LayerNorm, conv or norm layer."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.LayerNorm):
        return layer.normalized_shape[-1]
    if isinstance(layer, CONV_TYPES):
        return layer.out_channels
    return layer.num_features


class _ScaleShift(nn.Module):
    """The two SSF tensors: ``scale`` (C,) = 1 and ``shift`` (C,) = 0."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))
        self.created = ()  # parameters a merge created on the layer (removed by unmerge)


class SSFNorm(_ScaleShift, AffineMethod):
    """SSF after a norm layer, composed into its affine parameters."""

    mergeable = True

    def compose(self, norm: nn.Module, weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of shape (C,) or None -> (weight * scale, bias * scale + shift)."""
        weight = self.scale if weight is None else weight * self.scale
        bias = self.shift if bias is None else bias * self.scale + self.shift
        return weight, bias

    def merge(self, norm: nn.Module) -> None:
        """Fold scale and shift into the norm's weight and bias (creating them if absent)."""
        self.created = tuple(attr for attr in ("weight", "bias") if getattr(norm, attr) is None)
        for attr in self.created:
            fill = torch.ones_like if attr == "weight" else torch.zeros_like
            setattr(norm, attr, nn.Parameter(fill(self.scale), requires_grad=False))
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
            norm.affine = True
        norm.weight.mul_(self.scale)
        norm.bias.copy_(norm.bias * self.scale + self.shift)

    def unmerge(self, norm: nn.Module) -> None:
        """Take scale and shift back out of the norm's weight and bias."""
        norm.bias.copy_((norm.bias - self.shift) / self.scale)
        norm.weight.div_(self.scale)
        for attr in self.created:
            setattr(norm, attr, None)
        if isinstance(norm, nn.modules.instancenorm._InstanceNorm) and self.created:
            norm.affine = False
        self.created = ()


class SSFOutput(_ScaleShift, OutputMethod):
    """SSF after a Linear (channel axis -1) or convolution (channel axis 1)."""

    mergeable = True

    def __init__(self, channels: int, channel_axis: int) -> None:
        super().__init__(channels)
        self.channel_axis = channel_axis

    def _view(self, tensor: torch.Tensor, dims: int, axis: int) -> torch.Tensor:
        shape = [1] * dims
        shape[axis] = -1
        return tensor.view(shape)

    def forward(self, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y: the layer's (B, N, C) or (B, C, D, H, W) output -> same shape."""
        return y * self._view(self.scale, y.dim(), self.channel_axis) \
            + self._view(self.shift, y.dim(), self.channel_axis)

    def _weight_view(self, layer: nn.Module) -> torch.Tensor:
        # output channels are axis 1 of a ConvTranspose3d weight (in, out, k, k, k), else axis 0
        return self._view(self.scale, layer.weight.dim(), 1 if isinstance(layer, nn.ConvTranspose3d) else 0)

    def merge(self, layer: nn.Module) -> None:
        """Fold scale and shift into the layer's weight and bias (creating the bias if absent)."""
        self.created = ("bias",) if layer.bias is None else ()
        if self.created:
            layer.bias = nn.Parameter(torch.zeros_like(self.shift), requires_grad=False)
        layer.weight.mul_(self._weight_view(layer))
        layer.bias.copy_(layer.bias * self.scale + self.shift)

    def unmerge(self, layer: nn.Module) -> None:
        """Take scale and shift back out of the layer's weight and bias."""
        layer.bias.copy_((layer.bias - self.shift) / self.scale)
        layer.weight.div_(self._weight_view(layer))
        if self.created:
            layer.bias = None
        self.created = ()


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Attach an SSF layer (slot ``ssf``) after every SSF site of ``part``."""
    handle = MethodHandle("ssf", part)
    for name in sites.ssf:
        layer = model.get_submodule(name)
        if isinstance(layer, NORM_TYPES):
            method = SSFNorm(output_channels(layer))
        elif isinstance(layer, (nn.Linear,) + CONV_TYPES):
            method = SSFOutput(output_channels(layer), -1 if isinstance(layer, TOKEN_LAYERS) else 1)
        else:
            raise ValueError(f"SSF site {name} is a {type(layer).__name__}, not a Linear, conv or norm layer")
        handle.attach(model, name, "ssf", method)
    return handle
