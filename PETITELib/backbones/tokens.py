"""Transformer plumbing shared by both backbones: running blocks with optional VPT prompts
and activation checkpointing, and attention over image tokens and prompts.

Prompts take part in attention in one of two ways, chosen per attention layer by its
``prompt_gate`` (see :class:`PromptableAttention`):

- no gate (``vpt``, as in VPT and the PETITE paper): the prompts are ordinary extra tokens, so
  every query attends to the prompt and image keys in ONE softmax. The prompts then change the
  image tokens' attention weights from the start: not the identity at initialisation;
- a per-head gate (``gvpt``, our variant): each query attends to the image keys and to the
  prompt keys in two separate softmaxes and the prompt part is added times the gate, which
  starts at zero, so a freshly prompted model computes exactly what its base computes.
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


def prompt_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_prompts: int,
                     gate: Optional[torch.Tensor], dropout_p: float = 0.0) -> torch.Tensor:
    """Scaled dot-product attention where the first ``num_prompts`` keys/values are prompts.

    q: (B, heads, Nq, d); k, v: (B, heads, Nk, d); gate: (heads,) or None.
    Without a gate (or without prompts): one softmax over all Nk keys, prompts and image
    tokens together. With a gate: softmax-attention over the image keys + gate * softmax-
    attention over the prompt keys. Returns (B, heads, Nq, d).
    """
    if num_prompts == 0 or gate is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    image = F.scaled_dot_product_attention(q, k[:, :, num_prompts:], v[:, :, num_prompts:],
                                           dropout_p=dropout_p)
    prompt = F.scaled_dot_product_attention(q, k[:, :, :num_prompts], v[:, :, :num_prompts],
                                            dropout_p=dropout_p)
    return image + gate.view(1, -1, 1, 1) * prompt


class PromptableAttention(nn.Module):
    """Base class of the backbones' attention layers: holds the VPT prompt attributes.

    ``num_prompts`` (int): how many leading tokens of the input are prompts (0: none).
    ``prompt_gate`` (parameter of shape (heads,) or None): the prompt part's gate (``gvpt``);
    None: prompts and image tokens share one softmax (``vpt``). See :func:`prompt_attention`.
    """

    def __init__(self, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_prompts = 0
        self.register_parameter("prompt_gate", None)
