"""Backbone registry: name -> builder with presets ``paper`` and ``cpu``.

``build_backbone(name, preset)`` returns an ``nn.Module`` mapping (B, 1, 64, 64, 64) to
(B, 1, 64, 64, 64) that also carries :class:`~PETITELib.backbones.base.BackboneMixin`
(its encoder/decoder parts and PEFT sites, ``gradient_checkpointing``).
``build_discriminator(name, preset)`` returns the adversarial discriminator of a GAN backbone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

from torch import nn

from ..errors import PetiteError
from .base import PART_NAMES, ROI_SIZE, BackboneMixin, PartSites
from .cvtgan import CVTGAN_PRESETS, build_cvtgan
from .discriminator import build_cvtgan_discriminator
from .unetr import UNETR_PRESETS, build_unetr

PRESETS = ("paper", "cpu")


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: its builder, its size presets, and its discriminator builder
    (None for backbones trained without an adversarial loss)."""

    build: Callable[..., nn.Module]
    presets: Dict[str, object]
    build_discriminator: Optional[Callable[[str], nn.Module]]
    description: str


BACKBONES: Dict[str, BackboneEntry] = {
    "unetr": BackboneEntry(build_unetr, UNETR_PRESETS, None,
                           "MONAI UNETR: ViT encoder, CNN decoder"),
    "cvtgan": BackboneEntry(build_cvtgan, CVTGAN_PRESETS, build_cvtgan_discriminator,
                            "3D CvT-GAN: convolutional-transformer encoder and decoder, patch discriminator"),
}


def _entry(name: str, preset: str) -> BackboneEntry:
    if name not in BACKBONES:
        raise PetiteError(f"unknown backbone '{name}' (choose from {', '.join(BACKBONES)})")
    if preset not in PRESETS:
        raise PetiteError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    return BACKBONES[name]


def build_backbone(name: str, preset: str = "paper", residual: bool = True,
                   gradient_checkpointing: bool = False) -> nn.Module:
    """Build backbone ``name`` at size ``preset``: (B, 1, 64, 64, 64) -> (B, 1, 64, 64, 64).

    residual: predict a correction added to the input (long = short + net(short)); default.
    gradient_checkpointing: recompute the activations of the transformer blocks and CNN
    blocks during backward instead of storing them (train mode only; settable later as
    ``model.gradient_checkpointing``).
    Raises :class:`PetiteError` for an unknown name or preset.
    """
    return _entry(name, preset).build(preset, residual=residual,
                                      gradient_checkpointing=gradient_checkpointing)


def build_discriminator(name: str, preset: str = "paper") -> nn.Module:
    """Build the discriminator of GAN backbone ``name`` (only ``cvtgan`` has one)."""
    entry = _entry(name, preset)
    if entry.build_discriminator is None:
        raise PetiteError(f"backbone '{name}' has no discriminator")
    return entry.build_discriminator(preset)


__all__ = ["BACKBONES", "PRESETS", "PART_NAMES", "ROI_SIZE", "BackboneEntry", "BackboneMixin",
           "PartSites", "build_backbone", "build_discriminator"]
