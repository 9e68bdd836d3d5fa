"""Convolutional-transformer (CvT) building blocks in 3D, written from the published description.

Tokens are (B, N, C) with N = D*H*W of a grid; prompts, when present, precede them.
Attention (Wu et al. 2021, 3D as in Zeng et al. 2022): q, k and v come from a depthwise
3x3x3 convolution + BatchNorm on the token grid (stride 1 for q, 2 for k and v) followed by
a Linear projection; there is no positional embedding. Prompt tokens have no grid position,
so, like CvT's class token, they skip the convolution and get only the Linear projection.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
from torch import nn

from .tokens import PromptableAttention, prompt_attention, run_blocks


class ConvProjection(nn.Sequential):
    """Depthwise 3x3x3 Conv3d (no bias) + BatchNorm3d: (B, C, D, H, W) -> (B, C, D/s, H/s, W/s)."""

    def __init__(self, dim: int, stride: int) -> None:
        super().__init__(nn.Conv3d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False),
                         nn.BatchNorm3d(dim))


class ConvAttention(PromptableAttention):
    """CvT multi-head attention: (B, P + N, C) tokens of a grid (D, H, W) -> (B, P + N, C)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__(num_heads)
        self.conv_q = ConvProjection(dim, stride=1)
        self.conv_k = ConvProjection(dim, stride=2)
        self.conv_v = ConvProjection(dim, stride=2)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)

    def _split_heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        return tokens.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """x: (B, P + D*H*W, C) with P = ``num_prompts`` leading prompt tokens; grid: (D, H, W)."""
        batch, length, dim = x.shape
        prompts, image = x[:, :self.num_prompts], x[:, self.num_prompts:]
        volume = image.transpose(1, 2).reshape(batch, dim, *grid)

        def project(conv: nn.Module, linear: nn.Linear) -> torch.Tensor:
            tokens = conv(volume).flatten(2).transpose(1, 2)
            if self.num_prompts:
                tokens = torch.cat([prompts, tokens], dim=1)
            return self._split_heads(linear(tokens))

        q = project(self.conv_q, self.proj_q)
        k = project(self.conv_k, self.proj_k)
        v = project(self.conv_v, self.proj_v)
        out = prompt_attention(q, k, v, self.num_prompts, self.prompt_gate)
        return self.proj_out(out.transpose(1, 2).reshape(batch, length, dim))


class TokenMLP(nn.Module):
    """Feed-forward layer on (B, N, C) tokens: Linear C -> ratio*C, GELU, Linear -> C."""

    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        return self.fc2(self.act(self.fc1(x)))


class CvTBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)); (B, N, C) tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ConvAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TokenMLP(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, grid: Tuple[int, int, int]) -> torch.Tensor:
        """x: (B, P + D*H*W, C) -> same shape; grid: (D, H, W)."""
        x = x + self.attn(self.norm1(x), grid)
        return x + self.mlp(self.norm2(x))


class CvTStage(nn.Module):
    """One CvT stage: token embedding (strided conv, or transposed conv in the decoder) +
    LayerNorm, then ``depth`` blocks. (B, Cin, D, H, W) -> (B, C, D', H', W').

    Holds the VPT slot: ``prompt_tokens`` (1, P, C) or None; prompts enter before block
    ``prompt_first_block`` (0: the stage's first block) and are dropped at the stage's end.
    """

    def __init__(self, embed: nn.Module, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.embed = embed
        self.embed_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(CvTBlock(dim, num_heads) for _ in range(depth))
        self.num_heads = num_heads
        self.register_parameter("prompt_tokens", None)
        self.prompt_first_block = 0

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """(B, Cin, D, H, W) -> (B, C, D', H', W')."""
        embedded = self.embed(volume)
        batch, dim, *grid = embedded.shape
        tokens = self.embed_norm(embedded.flatten(2).transpose(1, 2))
        tokens, _ = run_blocks(self.blocks, tokens, self, tuple(grid))
        return tokens.transpose(1, 2).reshape(batch, dim, *grid)

    def attention_names(self, prefix: str) -> Sequence[str]:
        """Dotted names (under ``prefix``) of the attention layers of this stage's blocks."""
        return [f"{prefix}.blocks.{i}.attn" for i in range(len(self.blocks))]


def strided_embedding(in_channels: int, out_channels: int) -> nn.Conv3d:
    """CvT token embedding: Conv3d k3, stride 2 (halves each side)."""
    return nn.Conv3d(in_channels, out_channels, 3, stride=2, padding=1)


def transposed_expansion(in_channels: int, out_channels: int) -> nn.ConvTranspose3d:
    """Decoder token expansion: ConvTranspose3d k4, stride 2, padding 1 (doubles each side; the
    kernel is a multiple of the stride, so every output voxel gets the same number of taps)."""
    return nn.ConvTranspose3d(in_channels, out_channels, 4, stride=2, padding=1)
