"""LoRA: a low-rank update ``(alpha / r) * B A`` added to chosen weights; B starts at zero.

Targets come from the backbone (``PartSites.lora``): the q and k projections of every
attention layer (for MONAI's fused ``[q|k|v]`` Linear, a separate low-rank pair per q and k
row block; v is untouched and no unused layers are created), and every convolution of a CNN
part (down-projection = a conv with the target's kernel to r channels, up-projection = 1x1x1
conv to the target's outputs). A is initialised like the layer it adapts (Kaiming uniform),
B with zeros, so the model is unchanged at first; note that A's gradient is then exactly zero
until B has moved (one optimizer step). Mergeable: ``W += (alpha / r) * B A``; unmerge
subtracts it again.

The layer computes ``y = base(x) + scaling * B A x`` in one pass: the frozen base keeps no copy
of ``x`` (see :mod:`.frozen`); the low-rank path keeps ``x`` and the r-channel hidden tensor,
which are what A's and B's gradients need.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import LoRATarget, PartSites
from .configs import LoRAConfig
from .handles import MethodHandle
from .layers import OutputMethod

Config = LoRAConfig


def _kaiming(shape: Tuple[int, ...]) -> torch.Tensor:
    weight = torch.empty(shape)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return weight


class LoRALinear(OutputMethod):
    """Low-rank update of equal, contiguous output-row blocks of a Linear (in -> out).

    down: (S, r, in), up: (S, d, r) for S blocks of d rows starting at row ``start``.
    y (..., out) -> y + pad(scaling * [B_s A_s x]_s) on rows start .. start + S*d.
    """

    mergeable = True

    def __init__(self, linear: nn.Linear, row_blocks: Tuple[Tuple[int, int], ...], r: int, alpha: float) -> None:
        super().__init__()
        sizes = {stop - start for start, stop in row_blocks}
        contiguous = all(a[1] == b[0] for a, b in zip(row_blocks, row_blocks[1:]))
        if len(sizes) != 1 or not contiguous:
            raise ValueError(f"LoRA row blocks must be contiguous and of equal size: {row_blocks}")
        rows = sizes.pop()
        self.start = row_blocks[0][0]
        self.out_features = linear.out_features
        self.scaling = alpha / r
        self.down = nn.Parameter(torch.stack([_kaiming((r, linear.in_features)) for _ in row_blocks]))
        self.up = nn.Parameter(torch.zeros(len(row_blocks), rows, r))

    def forward(self, linear: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (..., in), y: (..., out) the base output of ``linear`` -> (..., out)."""
        hidden = torch.einsum("...i,sri->...sr", x, self.down)
        delta = torch.einsum("...sr,sdr->...sd", hidden, self.up).flatten(-2) * self.scaling
        return y + F.pad(delta, (self.start, self.out_features - self.start - delta.shape[-1]))

    def _delta(self) -> torch.Tensor:
        return torch.einsum("sdr,sri->sdi", self.up, self.down).flatten(0, 1) * self.scaling

    def merge(self, linear: nn.Linear) -> None:
        """Add the low-rank update to ``linear.weight`` (out, in)."""
        delta = self._delta()
        linear.weight[self.start:self.start + delta.shape[0]] += delta

    def unmerge(self, linear: nn.Linear) -> None:
        """Subtract the low-rank update from ``linear.weight`` again."""
        delta = self._delta()
        linear.weight[self.start:self.start + delta.shape[0]] -= delta


class LoRAConv(OutputMethod):
    """Low-rank update of a Conv3d or ConvTranspose3d (groups 1, zero padding).

    down: the target's kernel from ``in`` to r channels (Conv3d weight (r, in, k, k, k);
    ConvTranspose3d weight (in, r, k, k, k)), same stride/padding/dilation; up: (out, r, 1, 1, 1).
    y (B, out, ...) -> y + scaling * up(down(x)).

    The tuned convolution runs it as one convolution with weight W + :meth:`delta` when it is the
    first of the layer's output methods (:class:`~PETITELib.peft.layers.TunedConv`): the narrow
    r-channel convolution is a slow kernel, and it would keep its input for the down weight's
    gradient anyway, so the composed weight costs what Full-FT's convolution costs and no more.
    """

    mergeable = True
    composes_into_weight = True

    def __init__(self, conv: nn.Module, r: int, alpha: float) -> None:
        super().__init__()
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("LoRA supports convolutions with groups=1 and zero padding only")
        self.transposed = isinstance(conv, nn.ConvTranspose3d)
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation
        self.output_padding = conv.output_padding
        self.scaling = alpha / r
        down = _kaiming((r, conv.in_channels, *conv.kernel_size))
        self.down = nn.Parameter(down.transpose(0, 1).contiguous() if self.transposed else down)
        self.up = nn.Parameter(torch.zeros(conv.out_channels, r, 1, 1, 1))

    def forward(self, conv: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (B, in, D, H, W), y: (B, out, D', H', W') the base output of ``conv`` -> same as y."""
        if self.transposed:
            hidden = F.conv_transpose3d(x, self.down, None, self.stride, self.padding,
                                        self.output_padding, 1, self.dilation)
        else:
            hidden = F.conv3d(x, self.down, None, self.stride, self.padding, self.dilation)
        return y + F.conv3d(hidden, self.up) * self.scaling

    def delta(self) -> torch.Tensor:
        """The low-rank update of the convolution's weight (its shape), scaling included."""
        up = self.up[:, :, 0, 0, 0]
        if self.transposed:
            return torch.einsum("irxyz,or->ioxyz", self.down, up) * self.scaling
        return torch.einsum("or,rixyz->oixyz", up, self.down) * self.scaling

    def merge(self, conv: nn.Module) -> None:
        """Add the low-rank update to ``conv.weight``."""
        conv.weight += self.delta()

    def unmerge(self, conv: nn.Module) -> None:
        """Subtract the low-rank update from ``conv.weight`` again."""
        conv.weight -= self.delta()


def _layer_for(target: nn.Module, site: LoRATarget, config: LoRAConfig) -> nn.Module:
    if isinstance(target, nn.Linear):
        return LoRALinear(target, site.row_blocks or ((0, target.out_features),), config.r, config.alpha)
    return LoRAConv(target, config.r, config.alpha)


def inject(model: nn.Module, part: str, sites: PartSites, config: LoRAConfig) -> MethodHandle:
    """Attach a LoRA layer (slot ``lora``) to every LoRA target of ``part``."""
    handle = MethodHandle("lora", part)
    for site in sites.lora:
        target = model.get_submodule(site.module)
        handle.attach(model, site.module, "lora", _layer_for(target, site, config))
    return handle
