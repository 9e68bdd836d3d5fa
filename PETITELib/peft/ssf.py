"""SSF (scale and shift features): ``y * gamma + beta`` per channel after chosen layers.

Sites come from the backbone (``PartSites.ssf``): in a ViT after every norm layer, attention
output projection and MLP output layer (each norm gets its own pair, so a block's two norms
have two pairs); in a CNN after every norm and every convolution that does not feed a norm.
gamma starts at 1 and beta at 0 (identity). Mergeable into the layer it follows: a Linear or
conv gets its output channels scaled and its bias shifted (a bias is created if it had none),
a norm gets its affine parameters scaled and shifted (created for a non-affine InstanceNorm).

Memory: ``y * gamma + beta`` would keep the norm's output for gamma's gradient (one more
full-size activation per site; about +15% peak memory for UNETR's petite on the cpu preset).
After a norm layer the hook therefore recomputes the normalisation from the norm's input with
the composed affine parameters (weight * gamma, bias * gamma + beta), which autograd stores no
more than the norm alone; the base norm's own output is discarded. After Linear and conv
layers it is y * gamma + beta.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import PartSites
from .configs import NoArguments
from .handles import MethodHandle

Config = NoArguments
TOKEN_LAYERS = (nn.Linear, nn.LayerNorm)  # channel axis last: (B, N, C)
VOLUME_LAYERS = (nn.Conv3d, nn.ConvTranspose3d, nn.modules.batchnorm._BatchNorm,
                 nn.modules.instancenorm._InstanceNorm)  # channel axis 1: (B, C, D, H, W)


def output_channels(layer: nn.Module) -> int:
    """Number of output channels of a Linear, LayerNorm, conv or norm layer."""
    if isinstance(layer, nn.Linear):
        return layer.out_features
    if isinstance(layer, nn.LayerNorm):
        return layer.normalized_shape[-1]
    if isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d)):
        return layer.out_channels
    return layer.num_features


class ScaleShift(nn.Module):
    """Per-channel ``y * scale + shift``; scale, shift: (C,); channel axis -1 or 1."""

    def __init__(self, channels: int, channel_axis: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels))
        self.channel_axis = channel_axis

    def forward(self, target: nn.Module, x: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """x: the ``target``'s input; output: its (B, N, C) or (B, C, D, H, W) output -> same shape."""
        if _renormalisable(target):
            weight = self.scale if target.weight is None else target.weight * self.scale
            bias = self.shift if target.bias is None else target.bias * self.scale + self.shift
            return _normalise(target, x, weight, bias)
        shape = [1] * output.dim()
        shape[self.channel_axis] = -1
        return output * self.scale.view(shape) + self.shift.view(shape)

    def merge_into(self, layer: nn.Module) -> None:
        """Fold scale and shift into ``layer``'s weight and bias (creating them if absent)."""
        if isinstance(layer, nn.modules.instancenorm._InstanceNorm) and layer.weight is None:
            layer.weight = nn.Parameter(torch.ones_like(self.scale), requires_grad=False)
            layer.affine = True
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros_like(self.shift), requires_grad=False)
        if isinstance(layer, nn.ConvTranspose3d):  # weight (in, out, k, k, k)
            layer.weight *= self.scale.view(1, -1, *[1] * (layer.weight.dim() - 2))
        else:  # weight (out, ...) or (C,)
            layer.weight *= self.scale.view(-1, *[1] * (layer.weight.dim() - 1))
        layer.bias.copy_(layer.bias * self.scale + self.shift)


def _renormalisable(layer: nn.Module) -> bool:
    """True for norm layers whose forward :func:`_normalise` can redo (not a BatchNorm in train
    mode, which would update its running statistics a second time)."""
    if isinstance(layer, nn.modules.batchnorm._BatchNorm):
        return not layer.training
    return isinstance(layer, (nn.LayerNorm, nn.modules.instancenorm._InstanceNorm))


def _normalise(norm: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``norm``'s forward on its input ``x`` with affine ``weight`` and ``bias`` of shape (C,)."""
    if isinstance(norm, nn.LayerNorm):
        return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)
    if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
        return F.instance_norm(x, norm.running_mean, norm.running_var, weight, bias,
                               norm.training or not norm.track_running_stats, norm.momentum or 0.0, norm.eps)
    return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, False, 0.0, norm.eps)


def inject(model: nn.Module, part: str, sites: PartSites, config: NoArguments) -> MethodHandle:
    """Attach a ScaleShift layer (slot ``ssf``) after every SSF site of ``part``."""
    handle = MethodHandle("ssf", part)
    for name in sites.ssf:
        layer = model.get_submodule(name)
        if not isinstance(layer, TOKEN_LAYERS + VOLUME_LAYERS):
            raise ValueError(f"SSF site {name} is a {type(layer).__name__}, not a Linear, conv or norm layer")
        axis = -1 if isinstance(layer, TOKEN_LAYERS) else 1
        handle.attach(model, name, "ssf", ScaleShift(output_channels(layer), axis))
    return handle
