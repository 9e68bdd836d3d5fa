"""Generated text from the code itself: backbone sizes and trainable parameters per PEFT method.

Counted on weightless (meta-device) models, as ``petite methods`` counts them, so the docs show
what the code builds today.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, Tuple

BACKBONE_TITLES = {"unetr": "UNETR", "cvtgan": "CvT-GAN"}


@lru_cache(maxsize=None)
def _counts(backbone: str, preset: str, specs: Tuple[str, ...]) -> Dict[str, Tuple[int, int]]:
    """{spec: (trainable, total)} for ``backbone`` at ``preset`` (a discriminator counts apart)."""
    import torch

    from ..backbones import build_backbone
    from ..peft import apply_peft, count_parameters, remove_peft

    with torch.device("meta"):
        model = build_backbone(backbone, preset)
    counts = {}
    for spec in specs:
        apply_peft(model, spec)
        count = count_parameters(model)
        remove_peft(model)
        counts[spec] = (count.trainable, count.total)
    return counts


@lru_cache(maxsize=None)
def _discriminator_size(backbone: str, preset: str) -> int:
    import torch

    from ..backbones import BACKBONES, build_discriminator

    if BACKBONES[backbone].build_discriminator is None:
        return 0
    with torch.device("meta"):
        return sum(p.numel() for p in build_discriminator(backbone, preset).parameters())


def backbone_sizes_table(root: Path) -> str:
    """Parameters of each backbone at each preset (and of the CvT-GAN discriminator)."""
    from ..backbones import BACKBONES, PRESETS

    lines = ["| backbone | " + " | ".join(f"`{preset}` preset" for preset in PRESETS) + " |",
             "|---" * (len(PRESETS) + 1) + "|"]
    for name in BACKBONES:
        cells = []
        for preset in PRESETS:
            total = _counts(name, preset, ("full",))["full"][1]
            discriminator = _discriminator_size(name, preset)
            cells.append(f"{total:,}" + (f" (discriminator {discriminator:,})" if discriminator else ""))
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _paper_percent(percent) -> str:
    return "- (not in the paper)" if percent is None else f"{percent:g} %"


def peft_parameters_table(root: Path) -> str:
    """Trainable parameters of each method and of ``petite`` at the paper preset, beside the
    paper's Table 1 percentages."""
    from ..hyperparameters import TABLE1_PERCENT
    from ..peft import METHODS

    names = (*METHODS, "petite")
    header = "| method | " + " | ".join(f"{BACKBONE_TITLES[b]} ours | {BACKBONE_TITLES[b]} paper"
                                        for b in BACKBONE_TITLES) + " |"
    lines = [header, "|---" * (1 + 2 * len(BACKBONE_TITLES)) + "|"]
    counts = {backbone: _counts(backbone, "paper", names) for backbone in BACKBONE_TITLES}
    for name in names:
        cells = []
        for backbone in BACKBONE_TITLES:
            trainable, total = counts[backbone][name]
            cells += [f"{trainable:,} ({100 * trainable / total:.3f} %)", _paper_percent(TABLE1_PERCENT[backbone].get(name))]
        title = f"**{name}**" if name == "petite" else f"`{name}`"
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
