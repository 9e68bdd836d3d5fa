"""Transformer plumbing shared by both backbones: running blocks with optional VPT prompts
and activation checkpointing, and attention with a zero-initialised prompt gate.

Prompt gating (a documented deviation from plain VPT): with prompts in the key/value set the
image tokens' softmax would change at initialisation. Instead each query attends to the image
keys and to the prompt keys in two separate softmaxes and the prompt part is added with a
learnable per-head gate that starts at zero, so a freshly prompted model computes exactly
what its base computes.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checkpointing import call


def run_blocks(blocks: nn.ModuleList, tokens: torch.Tensor, owner: nn.Module, *block_args,
               checkpointing: bool = False) -> Tuple[torch.Tensor, List[torch.Tensor]]:
    """Run transformer ``blocks`` over (B, N, C) ``tokens``; VPT prompts enter and leave here.

    If ``owner.prompt_tokens`` (1, P, C) is set, the prompts are prepended before block
    ``owner.prompt_first_block`` and pass through the remaining blocks. They are dropped from
    every returned tensor. ``block_args`` are passed to each block after the tokens.
    With ``checkpointing``, each block's activations are recomputed in the backward pass
    instead of being stored (see :func:`~PETITELib.backbones.checkpointing.call`).
    Returns the final (B, N, C) image tokens and the list of per-block (B, N, C) outputs.
    """
    prompts: Optional[torch.Tensor] = owner.prompt_tokens
    num_prompts = 0
    outputs = []
    for index, block in enumerate(blocks):
        if prompts is not None and index == owner.prompt_first_block:
            tokens = torch.cat([prompts.expand(tokens.shape[0], -1, -1), tokens], dim=1)
            num_prompts = prompts.shape[1]
        tokens = call(block, tokens, *block_args, checkpointing=checkpointing)
        outputs.append(tokens[:, num_prompts:])
    return tokens[:, num_prompts:], outputs


def gated_prompt_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_prompts: int,
                           gate: Optional[torch.Tensor], dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention where the first ``num_prompts`` keys/values are prompts.

    q: (B, heads, Nq, d); k, v: (B, heads, Nk, d); gate: (heads,) or None.
    Returns (B, heads, Nq, d) = softmax-attention over the image keys
    + gate * softmax-attention over the prompt keys (just the first term without prompts).
    """
    if num_prompts == 0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    image = F.scaled_dot_product_attention(q, k[:, :, num_prompts:], v[:, :, num_prompts:],
                                           dropout_p=dropout_p)
    prompt = F.scaled_dot_product_attention(q, k[:, :, :num_prompts], v[:, :, :num_prompts],
                                            dropout_p=dropout_p)
    return image + gate.view(1, -1, 1, 1) * prompt


class PromptableAttention(nn.Module):
    """Base class of the backbones' attention layers: holds the VPT prompt attributes.

    ``num_prompts`` (int): how many leading tokens of the input are prompts (0: none).
    ``prompt_gate`` (parameter of shape (heads,) or None): the prompt part's gate.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_prompts = 0
        self.register_parameter("prompt_gate", None)
