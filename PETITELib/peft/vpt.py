"""Shallow visual prompt tuning with gated prompts.

Per prompt stage of a part (``PartSites.prompt_stages``; UNETR: the ViT; CvT: each conv-
transformer stage) ``tokens[i]`` learnable prompt tokens (1, P, C) enter the token sequence
(UNETR: before the 2nd ViT block, as in the paper; CvT: at the stage's first block), pass
through the remaining blocks of the stage and are dropped before anything else reads the
tokens (UNETR's decoder taps, CvT's reshaping to volumes). A count of 0 leaves a stage alone
(the paper's CvT encoder setting 0/8/32).

Deviation from the paper, for exact identity at initialisation: each attention layer the
prompts pass through gets a per-head gate (zeros at first) and adds gate * (attention over the
prompt keys) to its attention over the image keys, instead of a joint softmax (see
:mod:`PETITELib.backbones.tokens`). Prompt gradients are zero until the gates have moved
(one optimizer step). Not mergeable.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import PartSites
from .configs import VPTConfig
from .handles import MethodHandle

Config = VPTConfig
PROMPT_INIT_STD = 0.02


def inject(model: nn.Module, part: str, sites: PartSites, config: VPTConfig) -> MethodHandle:
    """Give every prompt stage of ``part`` its prompts (``prompt_tokens``) and its attention
    layers their gates (``prompt_gate``); ``config.tokens`` has one count per stage."""
    handle = MethodHandle("vpt", part)
    if len(config.tokens) != len(sites.prompt_stages):
        raise ValueError(f"vpt needs {len(sites.prompt_stages)} token counts, got {len(config.tokens)}")
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
            attention.prompt_gate = nn.Parameter(torch.zeros(stage.heads, device=reference.device))
            handle.add_new(f"{name}.prompt_gate", attention.prompt_gate)
            handle.undo.append(lambda attention=attention: (setattr(attention, "prompt_gate", None),
                                                            setattr(attention, "num_prompts", 0)))
    return handle
