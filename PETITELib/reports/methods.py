"""Generated sections of docs/peft-methods.md: trainable-parameter counts of every PEFT method
(what ``petite methods`` prints) and SSF's count under the placements we compared, both against
the paper's Table 1. Counted from the code on weightless (meta-device) paper-preset models."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import torch
from torch import nn

from ..backbones import BACKBONES, build_backbone
from ..backbones.base import PartSites
from ..backbones.tokens import PromptableAttention
from ..peft.catalogue import TABLE1_PERCENT
from ..peft.ssf import output_channels

COUNT_PRESET = "paper"


def _percent(count: int, total: int) -> str:
    return f"{count:,} ({100 * count / total:.3f} %)"


def _paper(backbone: str, name: str) -> str:
    value = TABLE1_PERCENT[backbone].get(name)
    return "-" if value is None else f"{value:g} %"


def method_counts_table(root: Path) -> str:
    """Per single method and ``petite``: our trainable parameters on each backbone's paper
    preset (with %) next to the paper's Table 1 percentage."""
    from ..commands.methods import method_rows

    rows: Dict[str, Dict[str, dict]] = {}
    for backbone in BACKBONES:
        for row in method_rows(backbone, COUNT_PRESET):
            if row["kind"] in ("method", "preset"):
                rows.setdefault(row["name"], {})[backbone] = row
    backbones = list(BACKBONES)
    header = "| method | " + " | ".join(f"{b} ours | {b} Table 1" for b in backbones) + " |"
    lines = [header, "|" + " --- |" * (1 + 2 * len(backbones))]
    for name, by_backbone in rows.items():
        cells = [f"{_percent(by_backbone[b]['trainable'], by_backbone[b]['total'])} | {_paper(b, name)}"
                 for b in backbones]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ssf_paper_extra_sites(model: nn.Module, sites: PartSites) -> List[str]:
    """The layers the SSF paper also scales and shifts in a ViT part, beyond our sites: every
    Linear of an attention layer that is not already a site (the q/k/v projections: UNETR's
    fused ``qkv``, CvT's ``proj_q/k/v``) and the first Linear of every MLP (the blocks that
    carry adapters on (B, N, C) tokens)."""
    attentions = [name for name, module in model.named_modules()
                  if isinstance(module, PromptableAttention) and sites.owns(name)]
    extra = [f"{attention}.{child}" for attention in attentions
             for child, module in model.get_submodule(attention).named_children()
             if isinstance(module, nn.Linear) and f"{attention}.{child}" not in sites.ssf]
    for site in sites.adapters:
        if site.layout == "tokens":
            first = next(name for name, module in model.get_submodule(site.module).named_modules()
                         if isinstance(module, nn.Linear))
            extra.append(f"{site.module}.{first}")
    return extra


def _ssf_counts(backbone: str) -> Dict[str, int]:
    """SSF parameters (2 per channel) of ``backbone``'s paper preset for three placements."""
    with torch.device("meta"):
        model = build_backbone(backbone, COUNT_PRESET)

    def count(names) -> int:
        return 2 * sum(output_channels(model.get_submodule(name)) for name in names)

    ours = extra = batchnorm = 0
    for sites in model.peft_parts().values():
        ours += count(sites.ssf)
        extra += count(ssf_paper_extra_sites(model, sites))
        batchnorm += count(name for name in sites.ssf
                           if isinstance(model.get_submodule(name), nn.modules.batchnorm._BatchNorm))
    total = sum(p.numel() for p in model.parameters())
    return {"total": total, "ours": ours, "ssf_paper": ours + extra, "ssf_paper_no_bn": ours + extra - batchnorm}


def ssf_sites_table(root: Path) -> str:
    """SSF's trainable parameters per backbone (paper preset) with our sites, with the SSF
    paper's extra sites, and with those but without the q/k/v BatchNorm sites, next to Table 1."""
    lines = ["| backbone (paper preset) | `ssf` (PETITE paper's sites) | + q/k/v and first MLP layer (SSF paper's) "
             "| + q/k/v and first MLP layer, no q/k/v BatchNorms | Table 1 |", "| --- | --- | --- | --- | --- |"]
    for backbone in BACKBONES:
        counts = _ssf_counts(backbone)
        cells = [_percent(counts[key], counts["total"]) for key in ("ours", "ssf_paper", "ssf_paper_no_bn")]
        lines.append(f"| {backbone} | " + " | ".join(cells) + f" | {_paper(backbone, 'ssf')} |")
    return "\n".join(lines) + "\n"
