"""3D CvT-GAN (Zeng et al., MICCAI 2022), written from the published description.

Generator, (B, 1, 64, 64, 64) -> (B, 1, 64, 64, 64), widths for the ``paper`` preset:
- encoder: stem Conv3d k3 s2 1->64 + LeakyReLU (32^3); CvT stage 1: 64->128 at 16^3, 1 block,
  2 heads; stage 2: 128->256 at 8^3, 2 blocks, 4 heads; stage 3: 256->512 at 4^3, 2 blocks,
  4 heads (strided conv token embedding + LayerNorm, pre-norm conv-attention blocks, MLP x4).
- decoder (mirror): stage 1: transposed-conv expansion 512->256 to 8^3, 2 blocks, 4 heads;
  stage 2: [dec1, enc2] 512->128 to 16^3, 1 block, 2 heads; head: [dec2, enc1] 256->64 to 32^3,
  [.., stem] 128->32 to 64^3 (transposed convs + LeakyReLU), Conv3d k3 32->1; global residual
  (output + input) when ``residual`` (default).
Encoder = ``encoder.*``, decoder = ``decoder.*``. With ``gradient_checkpointing`` the stem,
every stage and the head are recomputed in backward instead of stored. The patch discriminator is in
:mod:`PETITELib.backbones.discriminator`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import nn

from .base import AdapterSite, BackboneMixin, LoRATarget, PartSites, PromptStage, check_volume_batch
from .checkpointing import call
from .cvt_blocks import CvTStage, strided_embedding, transposed_expansion


@dataclass(frozen=True)
class CvTGANPreset:
    """CvT-GAN generator size: ``stem`` width and per encoder stage (width, blocks, heads);
    the decoder mirrors stages 2 and 1."""

    stem: int
    stages: Tuple[Tuple[int, int, int], Tuple[int, int, int], Tuple[int, int, int]]


CVTGAN_PRESETS: Dict[str, CvTGANPreset] = {
    # The published generator: stem 64, stages 128/256/512 with 1/2/2 blocks and 2/4/4 heads.
    "paper": CvTGANPreset(stem=64, stages=((128, 1, 2), (256, 2, 4), (512, 2, 4))),
    # CPU: every width divided by 4 (same depth and heads): about 1/16 of the parameters.
    "cpu": CvTGANPreset(stem=16, stages=((32, 1, 2), (64, 2, 4), (128, 2, 4))),
}


class DecoderHead(nn.Module):
    """Last two upsamplings with skips, then the output conv.

    (B, 2*C1, 16^3) -> ConvT -> (B, C0, 32^3); concat stem (C0) -> ConvT -> (B, C0/2, 64^3);
    Conv3d k3 -> (B, 1, 64^3).
    """

    def __init__(self, stage1_width: int, stem_width: int) -> None:
        super().__init__()
        self.up1 = transposed_expansion(2 * stage1_width, stem_width)
        self.up0 = transposed_expansion(2 * stem_width, stem_width // 2)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Conv3d(stem_width // 2, 1, 3, padding=1)

    def forward(self, features: torch.Tensor, stem: torch.Tensor) -> torch.Tensor:
        """features: (B, 2*C1, 16^3) decoder+encoder concat; stem: (B, C0, 32^3) -> (B, 1, 64^3)."""
        x = self.act(self.up1(features))
        x = self.act(self.up0(torch.cat([x, stem], dim=1)))
        return self.out(x)


class CvTGANGenerator(BackboneMixin, nn.Module):
    """3D CvT-GAN generator: (B, 1, 64, 64, 64) -> (B, 1, 64, 64, 64)."""

    def __init__(self, preset: str, residual: bool = True, gradient_checkpointing: bool = False) -> None:
        super().__init__()
        size = CVTGAN_PRESETS[preset]
        (w1, d1, h1), (w2, d2, h2), (w3, d3, h3) = size.stages
        self.encoder = nn.ModuleDict({
            "stem": nn.Sequential(nn.Conv3d(1, size.stem, 3, stride=2, padding=1), nn.LeakyReLU(0.2)),
            "stage1": CvTStage(strided_embedding(size.stem, w1), w1, d1, h1),
            "stage2": CvTStage(strided_embedding(w1, w2), w2, d2, h2),
            "stage3": CvTStage(strided_embedding(w2, w3), w3, d3, h3),
        })
        self.decoder = nn.ModuleDict({
            "stage1": CvTStage(transposed_expansion(w3, w2), w2, d2, h2),
            "stage2": CvTStage(transposed_expansion(2 * w2, w1), w1, d1, h1),
            "head": DecoderHead(w1, size.stem),
        })
        self.backbone_name = "cvtgan"
        self.preset = preset
        self.residual = residual
        self.options = {"residual": residual}
        self.gradient_checkpointing = gradient_checkpointing

    def _stages(self) -> Dict[str, CvTStage]:
        return {f"{part}.{name}": module for part in ("encoder", "decoder")
                for name, module in getattr(self, part).items() if isinstance(module, CvTStage)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 64, 64, 64) normalised short scan -> (B, 1, 64, 64, 64) long-scan estimate."""
        check_volume_batch(x)
        enc, dec, checkpointing = self.encoder, self.decoder, self.gradient_checkpointing
        stem = call(enc["stem"], x, checkpointing=checkpointing)
        skip1 = call(enc["stage1"], stem, checkpointing=checkpointing)
        skip2 = call(enc["stage2"], skip1, checkpointing=checkpointing)
        bottom = call(enc["stage3"], skip2, checkpointing=checkpointing)
        y = call(dec["stage1"], bottom, checkpointing=checkpointing)
        y = call(dec["stage2"], torch.cat([y, skip2], dim=1), checkpointing=checkpointing)
        out = call(dec["head"], torch.cat([y, skip1], dim=1), stem, checkpointing=checkpointing)
        return x + out if self.residual else out

    def peft_parts(self) -> Dict[str, PartSites]:
        """Per part, the transformer stages' sites: LoRA on each attention's q and k Linear
        projections, adapters after each MLP, SSF after every LayerNorm (token embedding and
        blocks), every q/k/v BatchNorm, every attention output and every MLP output; VPT slots
        on every stage. The stem and head convolutions are reached by BitFit, and those that
        read or write the full-resolution volume (the stem; the head's last upsampling and
        output conv) by ``fullres``."""
        parts = {}
        for part in ("encoder", "decoder"):
            stages = {name: stage for name, stage in self._stages().items() if name.startswith(part)}
            lora, adapters, ssf, prompts = [], [], [], []
            for name, stage in stages.items():
                width = stage.embed_norm.normalized_shape[0]
                ssf.append(f"{name}.embed_norm")
                for attention in stage.attention_names(name):
                    block = attention[: -len(".attn")]
                    lora += [LoRATarget(f"{attention}.proj_q"), LoRATarget(f"{attention}.proj_k")]
                    adapters.append(AdapterSite(f"{block}.mlp", width, "tokens"))
                    ssf += [f"{block}.norm1", *(f"{attention}.conv_{x}.1" for x in "qkv"),
                            f"{attention}.proj_out", f"{block}.norm2", f"{block}.mlp.fc2"]
                prompts.append(PromptStage(name, tuple(stage.attention_names(name)), width, stage.num_heads))
            full_resolution = {"encoder": ("encoder.stem",), "decoder": ("decoder.head.up0", "decoder.head.out")}
            parts[part] = PartSites(prefixes=(f"{part}.",), lora=tuple(lora), adapters=tuple(adapters),
                                    ssf=tuple(ssf), prompt_stages=tuple(prompts),
                                    full_resolution=full_resolution[part])
        return parts


def build_cvtgan(preset: str, residual: bool = True, gradient_checkpointing: bool = False) -> CvTGANGenerator:
    """Build the CvT-GAN generator for ``preset`` (``"paper"`` or ``"cpu"``); see :data:`CVTGAN_PRESETS`."""
    return CvTGANGenerator(preset, residual=residual, gradient_checkpointing=gradient_checkpointing)
