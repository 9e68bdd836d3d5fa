"""UNETR backbone: MONAI's ``UNETR`` (ViT encoder, CNN decoder), 1 channel in and out, ROI 64^3.

Changes to MONAI's network, none of which alter its function:
- each block's ``SABlock`` is replaced by :class:`FusedQKVSelfAttention`, which reuses the same
  ``qkv`` and ``out_proj`` layers (same parameter names) and adds VPT prompts (joint or
  gated, see :mod:`PETITELib.backbones.tokens`) and PyTorch's fused scaled-dot-product attention;
- the unused ``norm_cross_attn`` LayerNorm of each block is removed (MONAI creates it even
  without cross-attention; it would inflate parameter counts and never get a gradient);
- ``forward`` walks the ViT blocks itself so that prompts can be dropped before the decoder
  reads hidden states 3, 6 and 9, and so that with ``gradient_checkpointing`` every ViT block
  and every CNN block (encoder1..4, decoder5..2) is recomputed in backward instead of stored;
- with ``residual=True`` (default) the network predicts a correction:
  ``long = short + net(short)``.
Encoder = ``vit.*``; decoder = ``encoder1..4``, ``decoder2..5``, ``out`` (CNN paths).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch
from monai.networks.blocks import UnetResBlock
from monai.networks.nets import UNETR
from torch import nn

from ..errors import PetiteError
from .base import (ROI_SIZE, AdapterSite, BackboneMixin, LoRATarget, PartSites, PromptStage,
                   check_volume_batch)
from .checkpointing import call
from .tokens import PromptableAttention, prompt_attention, run_blocks

DECODER_PREFIXES = ("encoder1.", "encoder2.", "encoder3.", "encoder4.",
                    "decoder5.", "decoder4.", "decoder3.", "decoder2.", "out.")
HIDDEN_STATE_TAPS = (3, 6, 9)  # MONAI UNETR reads these block outputs for its skip paths
TESTED_MONAI = ">=1.6.1,<1.7"  # the MONAI versions the tests built these models with (pyproject.toml)


@dataclass(frozen=True)
class UNETRPreset:
    """UNETR size: ViT width ``hidden_size``, MLP width ``mlp_dim``, ``num_heads`` heads,
    decoder base width ``feature_size`` (MONAI fixes the ViT at 12 layers, patch 16^3)."""

    hidden_size: int
    mlp_dim: int
    num_heads: int
    feature_size: int


UNETR_PRESETS: Dict[str, UNETRPreset] = {
    # The paper's configuration (MONAI defaults): about 92.7 M parameters.
    "paper": UNETRPreset(hidden_size=768, mlp_dim=3072, num_heads=12, feature_size=16),
    # CPU: ViT width 192 (4 heads of 48), MLP 768, decoder width 8: about 7 M parameters.
    # The ViT sees only 64 tokens, so the 64^3 CNN decoder dominates the step time; halving
    # feature_size halves it. Measured step cost: docs/peft-cost.md (petite bench-cost).
    "cpu": UNETRPreset(hidden_size=192, mlp_dim=768, num_heads=4, feature_size=8),
}


class FusedQKVSelfAttention(PromptableAttention):
    """Multi-head self-attention on (B, N, C) tokens with MONAI's fused ``[q|k|v]`` Linear.

    ``qkv``: Linear C -> 3C laid out [q | k | v], each third split into heads; ``out_proj``:
    Linear C -> C. Supports VPT prompts, joint or gated (see :mod:`PETITELib.backbones.tokens`).
    """

    def __init__(self, qkv: nn.Linear, out_proj: nn.Linear, num_heads: int, dropout_rate: float) -> None:
        super().__init__(num_heads)
        self.qkv = qkv
        self.out_proj = out_proj
        self.dropout_rate = dropout_rate
        self.drop_output = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, attn_mask: None = None) -> torch.Tensor:
        """(B, N, C) -> (B, N, C); ``attn_mask`` exists for MONAI's block signature and must be None."""
        if attn_mask is not None:
            raise ValueError("FusedQKVSelfAttention does not support attention masks")
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        dropout_p = self.dropout_rate if self.training else 0.0
        out = prompt_attention(q, k, v, self.num_prompts, self.prompt_gate, dropout_p)
        return self.drop_output(self.out_proj(out.transpose(1, 2).reshape(batch, length, -1)))


def _monai_part(owner, name: str, where: str):
    """``owner.name``, or a PetiteError naming the installed MONAI version when MONAI no longer has it.

    PETITE edits a few of MONAI UNETR's internals (see the module docstring); a MONAI release
    that renames them must fail clearly, not build a different network.
    """
    try:
        return getattr(owner, name)
    except AttributeError:
        import monai

        raise PetiteError(f"MONAI {monai.__version__}: {where} has no '{name}' (PETITE's UNETR was built and "
                          f"tested with MONAI {TESTED_MONAI}); install a MONAI version in that range") from None


class UNETRBackbone(BackboneMixin, UNETR):
    """MONAI UNETR for 1-channel 64^3 PET crops: (B, 1, 64, 64, 64) -> (B, 1, 64, 64, 64)."""

    def __init__(self, preset: str, residual: bool = True, gradient_checkpointing: bool = False) -> None:
        size = UNETR_PRESETS[preset]
        UNETR.__init__(self, in_channels=1, out_channels=1, img_size=ROI_SIZE,
                       feature_size=size.feature_size, hidden_size=size.hidden_size,
                       mlp_dim=size.mlp_dim, num_heads=size.num_heads)
        for block in _monai_part(_monai_part(self, "vit", "UNETR"), "blocks", "UNETR.vit"):
            _monai_part(block, "norm_cross_attn", "TransformerBlock")
            del block.norm_cross_attn
            attention = _monai_part(block, "attn", "TransformerBlock")
            block.attn = FusedQKVSelfAttention(_monai_part(attention, "qkv", "SABlock"),
                                               _monai_part(attention, "out_proj", "SABlock"), size.num_heads,
                                               _monai_part(attention, "dropout_rate", "SABlock"))
        for name in ("patch_embedding", "norm"):
            _monai_part(self.vit, name, "UNETR.vit")
        for name in ("encoder1", "encoder2", "encoder3", "encoder4", "decoder5", "decoder4", "decoder3",
                     "decoder2", "out", "proj_feat"):
            _monai_part(self, name, "UNETR")
        self.vit.register_parameter("prompt_tokens", None)
        self.vit.prompt_first_block = 1  # VPT prompts enter at the 2nd encoder layer
        self.backbone_name = "unetr"
        self.preset = preset
        self.size = size
        self.residual = residual
        self.options = {"residual": residual}
        self.gradient_checkpointing = gradient_checkpointing

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64, 64) normalised short scan -> (B, 1, 64, 64, 64) long-scan estimate."""
        check_volume_batch(x_in)
        checkpointing = self.gradient_checkpointing
        tokens = self.vit.patch_embedding(x_in)
        tokens, hidden = run_blocks(self.vit.blocks, tokens, self.vit, checkpointing=checkpointing)
        tokens = self.vit.norm(tokens)
        enc1 = call(self.encoder1, x_in, checkpointing=checkpointing)
        enc2 = call(self.encoder2, self.proj_feat(hidden[HIDDEN_STATE_TAPS[0]]), checkpointing=checkpointing)
        enc3 = call(self.encoder3, self.proj_feat(hidden[HIDDEN_STATE_TAPS[1]]), checkpointing=checkpointing)
        enc4 = call(self.encoder4, self.proj_feat(hidden[HIDDEN_STATE_TAPS[2]]), checkpointing=checkpointing)
        dec3 = call(self.decoder5, self.proj_feat(tokens), enc4, checkpointing=checkpointing)
        dec2 = call(self.decoder4, dec3, enc3, checkpointing=checkpointing)
        dec1 = call(self.decoder3, dec2, enc2, checkpointing=checkpointing)
        out = self.out(call(self.decoder2, dec1, enc1, checkpointing=checkpointing))
        return x_in + out if self.residual else out

    def peft_parts(self) -> Dict[str, PartSites]:
        """Encoder: the ViT (LoRA on the q and k thirds of each fused qkv, adapters after each
        MLP, SSF after patch embedding, both norms, attention and MLP of every block and the
        final norm, VPT from block 2 on). Decoder: the CNN paths (LoRA on every convolution,
        adapters after every residual conv block, SSF after every norm and after every
        convolution that does not feed a norm, i.e. the transposed convs and the output conv;
        full resolution: ``encoder1``, ``decoder2`` and ``out``). SSF after a convolution that
        feeds InstanceNorm would be undone by the norm, so there is none."""
        hidden = self.size.hidden_size
        blocks = [f"vit.blocks.{i}" for i in range(len(self.vit.blocks))]
        encoder = PartSites(
            prefixes=("vit.",),
            lora=tuple(LoRATarget(f"{b}.attn.qkv", ((0, hidden), (hidden, 2 * hidden))) for b in blocks),
            adapters=tuple(AdapterSite(f"{b}.mlp", hidden, "tokens") for b in blocks),
            ssf=("vit.patch_embedding.patch_embeddings",)
            + tuple(f"{b}.{layer}" for b in blocks
                    for layer in ("norm1", "attn.out_proj", "norm2", "mlp.linear2"))
            + ("vit.norm",),
            prompt_stages=(PromptStage("vit", tuple(f"{b}.attn" for b in blocks[1:]),
                                       hidden, self.size.num_heads),),
        )
        decoder_modules = [(name, module) for name, module in self.named_modules()
                           if name.startswith(DECODER_PREFIXES)]
        convs = (nn.Conv3d, nn.ConvTranspose3d)
        decoder = PartSites(
            prefixes=DECODER_PREFIXES,
            lora=tuple(LoRATarget(name) for name, module in decoder_modules if isinstance(module, convs)),
            adapters=tuple(AdapterSite(name, module.conv2.conv.out_channels, "volume")
                           for name, module in decoder_modules if isinstance(module, UnetResBlock)),
            ssf=tuple(name for name, module in decoder_modules
                      if isinstance(module, (nn.InstanceNorm3d, nn.ConvTranspose3d))
                      or name == "out.conv.conv"),
            full_resolution=("encoder1", "decoder2", "out"),
        )
        return {"encoder": encoder, "decoder": decoder}


def build_unetr(preset: str, residual: bool = True, gradient_checkpointing: bool = False) -> UNETRBackbone:
    """Build the UNETR backbone for ``preset`` (``"paper"`` or ``"cpu"``); see :data:`UNETR_PRESETS`."""
    return UNETRBackbone(preset, residual=residual, gradient_checkpointing=gradient_checkpointing)

