"""What every backbone tells the PEFT layer: its parts, where each method acts, runtime switches.

A backbone is an ``nn.Module`` mapping (B, 1, 64, 64, 64) -> (B, 1, 64, 64, 64) that also
inherits :class:`BackboneMixin`. The mixin carries the registry name and preset, the
``gradient_checkpointing`` switch, and :meth:`BackboneMixin.peft_parts`, which lists for the
encoder and the decoder the layers each PEFT method may touch. The PEFT package only ever
reads these declarations; it never guesses layer roles from module names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import PetiteError

ROI_SIZE = 64  # every backbone works on 64^3 crops (the UNETR position embedding is sized by it)
PART_NAMES = ("encoder", "decoder")


@dataclass(frozen=True)
class LoRATarget:
    """A layer that receives a low-rank update.

    module: dotted name of an ``nn.Linear``, ``nn.Conv3d`` or ``nn.ConvTranspose3d``.
    row_blocks: for a fused Linear, the (start, stop) output-row ranges to adapt (e.g. the q
    and k thirds of MONAI's ``[q|k|v]`` layer); ``None`` adapts every output row.
    """

    module: str
    row_blocks: Optional[Tuple[Tuple[int, int], ...]] = None


@dataclass(frozen=True)
class AdapterSite:
    """A module whose output gets a bottleneck adapter ``h + up(gelu(down(h)))``.

    layout: ``"tokens"`` for (B, N, C) outputs (1-layer MLPs) or ``"volume"`` for
    (B, C, D, H, W) outputs (1x1x1 convolutions); channels: C.
    """

    module: str
    channels: int
    layout: str


@dataclass(frozen=True)
class PromptStage:
    """A run of transformer blocks over one token sequence that can carry VPT prompts.

    owner: module holding the ``prompt_tokens`` parameter (1, P, width) and the attribute
    ``prompt_first_block`` (index of the block the prompts enter before).
    attentions: the attention modules of the blocks the prompts pass through; each has the
    attributes ``num_prompts`` (int) and ``prompt_gate`` (parameter of shape (heads,) for
    gated prompts, None for prompts that share the image tokens' softmax).
    """

    owner: str
    attentions: Tuple[str, ...]
    width: int
    heads: int


@dataclass(frozen=True)
class PartSites:
    """Where each PEFT method acts inside one part (encoder or decoder) of a backbone.

    prefixes: parameter-name prefixes that make up the part (LayerNorm and BitFit tuning
    select norm layers and biases under them).
    lora, adapters, ssf, prompt_stages: the sites of the additive methods; ``ssf`` names
    Linear, Conv, transposed-Conv and normalisation layers whose output is scaled and shifted.
    full_resolution: the layers that read or write the full-resolution volume, which the
    ``fullres`` method trains outright.
    """

    prefixes: Tuple[str, ...]
    lora: Tuple[LoRATarget, ...] = ()
    adapters: Tuple[AdapterSite, ...] = ()
    ssf: Tuple[str, ...] = ()
    prompt_stages: Tuple[PromptStage, ...] = ()
    full_resolution: Tuple[str, ...] = ()

    def owns(self, name: str) -> bool:
        """True when the dotted parameter/module ``name`` belongs to this part."""
        return any(name.startswith(prefix) for prefix in self.prefixes)


class BackboneMixin:
    """Shared behaviour of PETITE backbones (mixed into an ``nn.Module`` subclass).

    Attributes set by the builder: ``backbone_name`` (registry key), ``preset`` (preset name),
    ``options`` (builder options that change the function, e.g. ``{"residual": True}``; stored
    in base-model files), ``gradient_checkpointing`` (recompute the transformer and CNN blocks
    in the backward pass instead of storing their activations), ``freeze_batchnorm_statistics``
    (keep BatchNorm layers on their running statistics even in train mode; PEFT sets it so
    that the frozen base never drifts).
    """

    backbone_name: str
    preset: str
    options: Dict[str, object]
    gradient_checkpointing: bool = False
    freeze_batchnorm_statistics: bool = False

    def peft_parts(self) -> Dict[str, PartSites]:
        """The encoder and decoder sites, keyed by ``"encoder"`` and ``"decoder"``."""
        raise NotImplementedError

    def train(self, mode: bool = True):
        """``nn.Module.train`` that keeps BatchNorm in eval mode when statistics are frozen."""
        super().train(mode)
        if mode and self.freeze_batchnorm_statistics:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def check_volume_batch(x: torch.Tensor, channels: int = 1) -> None:
    """Raise :class:`PetiteError` unless ``x`` is (B, channels, 64, 64, 64)."""
    expected = (channels, ROI_SIZE, ROI_SIZE, ROI_SIZE)
    if x.dim() != 5 or tuple(x.shape[1:]) != expected:
        raise PetiteError(f"model input must be (B, {channels}, {ROI_SIZE}, {ROI_SIZE}, {ROI_SIZE}), "
                          f"got {tuple(x.shape)}")
