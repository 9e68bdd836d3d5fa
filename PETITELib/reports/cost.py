"""Generated section of docs/peft-cost.md: the old-vs-new accuracy check."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

ACCURACY_JSON = "docs/benchmarks/petite-old-vs-new.json"


def accuracy_check(root: Path) -> str:
    """Head PSNR of PETITE fine-tuned with the hook-based and the module-based PEFT layers
    (docs/benchmarks/petite-old-vs-new.json)."""
    document = load_json(root, ACCURACY_JSON)
    psnr = document["head_psnr_db"]
    return (f"| | head PSNR (dB) |\n|---|---|\n| short scan (input) | {psnr['input']:.4f} |\n"
            f"| base alone (No-FT) | {psnr['no_ft']:.4f} |\n| PETITE, hook-based layers | {psnr['old']:.6f} |\n"
            f"| PETITE, module layers | {psnr['new']:.6f} |\n| difference (new - old) | {psnr['new_minus_old']:.1e} |\n")
