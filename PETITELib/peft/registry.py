"""The one PEFT registry: method name -> config type, injector, kind; part names.

Registry order is the order methods are applied in (selective methods first, so that BitFit
and LayerNorm tuning only ever select base tensors) and the order they are written in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict

from torch import nn

from ..backbones.base import PartSites
from . import adapter, bitfit, fullres, layernorm, lora, ssf, vpt
from .handles import MethodHandle


@dataclass(frozen=True)
class PeftMethod:
    """A registered PEFT method.

    kind: ``"selective"`` (trains base tensors in place) or ``"additive"`` (adds layers);
    config_type: its config dataclass; inject(model, part, sites, config) -> MethodHandle;
    mergeable: whether its layers fold into the base weights; identity_at_init: whether a
    freshly applied method leaves the model's output unchanged (selective methods trivially).
    """

    name: str
    kind: str
    config_type: type
    inject: Callable[[nn.Module, str, PartSites, object], MethodHandle]
    mergeable: bool
    description: str
    identity_at_init: bool = True


METHODS: Dict[str, PeftMethod] = {m.name: m for m in (
    PeftMethod("layernorm", "selective", layernorm.Config, layernorm.inject, False,
               "train the weight and bias of every LayerNorm"),
    PeftMethod("bitfit", "selective", bitfit.Config, bitfit.inject, False, "train every bias"),
    PeftMethod("fullres", "selective", fullres.Config, fullres.inject, False,
               "train outright the convolutions that read or write the full-resolution volume"),
    PeftMethod("lora", "additive", lora.Config, lora.inject, True,
               "low-rank updates of attention q and k (and of CNN convolutions)"),
    PeftMethod("adapter", "additive", adapter.Config, adapter.inject, False,
               "bottleneck adapters after each feed-forward layer / residual conv block"),
    PeftMethod("ssf", "additive", ssf.Config, ssf.inject, True,
               "per-channel scale and shift after attention, MLP, norm (and conv) layers"),
    PeftMethod("vpt", "additive", vpt.Config, vpt.inject, False,
               "shallow prompt tokens joining the image tokens' softmax, entering at the 2nd "
               "encoder layer / each stage", identity_at_init=False),
    PeftMethod("gvpt", "additive", vpt.Config, vpt.inject_gated, False,
               "vpt with the prompts in a separate softmax added through a zero-initialised gate"),
)}

# Spec part names -> backbone part names, and back.
PART_ALIASES = {"enc": "encoder", "encoder": "encoder", "dec": "decoder", "decoder": "decoder"}
PART_SHORT = {"encoder": "enc", "decoder": "dec"}

FULL_FINE_TUNING = "full"

