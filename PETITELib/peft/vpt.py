"""Shallow visual prompt tuning: ``vpt`` (as in the paper) and ``gvpt`` (gated, our variant).

Per prompt stage of a part (``PartSites.prompt_stages``; UNETR: the ViT; CvT: each conv-
transformer stage) ``tokens[i]`` learnable prompt tokens (1, P, C) are prepended to the token
sequence (UNETR: before the 2nd ViT block, as in the paper; CvT: at the stage's first block),
pass through the remaining blocks of the stage as extra tokens (norms, attention, MLP; in a
CvT attention they skip the depthwise convolution, which needs a grid position, and get only
the Linear q/k/v projections) and are dropped before anything else reads the tokens (UNETR's
decoder taps, CvT's reshaping to volumes). This is VPT-shallow, the paper's equation (1):
[Z_2, E_2] = L_2([P, E_1]), [Z_i, E_i] = L_i([Z_{i-1}, E_{i-1}]). A count of 0 leaves a stage
alone (the paper's CvT encoder setting 0/8/32). Neither form is mergeable.

- ``vpt`` (:func:`inject`): the prompts are plain tokens, so each attention layer attends over
  prompts and image tokens in ONE softmax. Trains only ``prompt_tokens``. Not the identity at
  initialisation: the prompts take a share of every image token's attention from the start.
- ``gvpt`` (:func:`inject_gated`): each attention layer the prompts pass through also gets a
  per-head gate (``prompt_gate``, zeros at first) and adds gate * (attention over the prompt
  keys) to its attention over the image keys, in two softmaxes (see
  :mod:`PETITELib.backbones.tokens`): exactly the identity at initialisation. Prompt gradients
  are zero until the gates have moved (one optimizer step).

Prompts start as N(0, 0.02^2) values. The two forms cannot share a part (the spec parser refuses it).
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import PartSites
from .configs import VPTConfig
from .handles import MethodHandle

Config = VPTConfig
PROMPT_INIT_STD = 0.02


def _inject(method: str, model: nn.Module, part: str, sites: PartSites, config: VPTConfig,
            gated: bool) -> MethodHandle:
    handle = MethodHandle(method, part)
    if len(config.tokens) != len(sites.prompt_stages):
        raise ValueError(f"{method} needs {len(sites.prompt_stages)} token counts, got {len(config.tokens)}")
    reference = next(model.parameters())
    for stage, count in zip(sites.prompt_stages, config.tokens):
        if count == 0:
            continue
        owner = model.get_submodule(stage.owner)
        prompts = torch.randn(1, count, stage.width, device=reference.device) * PROMPT_INIT_STD
        owner.prompt_tokens = nn.Parameter(prompts)
        handle.add_new(f"{stage.owner}.prompt_tokens", owner.prompt_tokens)
        handle.undo.append(lambda owner=owner: setattr(owner, "prompt_tokens", None))
        for name in stage.attentions:
            attention = model.get_submodule(name)
            attention.num_prompts = count
            if gated:
                attention.prompt_gate = nn.Parameter(torch.zeros(stage.heads, device=reference.device))
                handle.add_new(f"{name}.prompt_gate", attention.prompt_gate)
            handle.undo.append(lambda attention=attention: (setattr(attention, "prompt_gate", None),
                                                            setattr(attention, "num_prompts", 0)))
    return handle


def inject(model: nn.Module, part: str, sites: PartSites, config: VPTConfig) -> MethodHandle:
    """``vpt``: give every prompt stage of ``part`` its prompts (``prompt_tokens``), which join
    the image tokens in one softmax; ``config.tokens`` has one count per stage."""
    return _inject("vpt", model, part, sites, config, gated=False)


def inject_gated(model: nn.Module, part: str, sites: PartSites, config: VPTConfig) -> MethodHandle:
    """``gvpt``: as :func:`inject`, plus a zero-initialised per-head gate (``prompt_gate``) on
    every attention layer the prompts pass through, which then attends to them separately."""
    return _inject("gvpt", model, part, sites, config, gated=True)
