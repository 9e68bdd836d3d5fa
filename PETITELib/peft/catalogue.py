"""The rows ``petite methods`` lists: each single method with the paper's Table 1 settings, the
``petite`` preset, full fine-tuning, and every feasible Mix-PEFT of Tables 6 and 7 (with
BitFit), each with the paper's reported percentage of trainable parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .registry import FULL_FINE_TUNING, METHODS

# Paper Table 1: % trainable parameters of each single method.
TABLE1_PERCENT: Dict[str, Dict[str, float]] = {
    "cvtgan": {"layernorm": 0.041, "bitfit": 0.12, "lora": 0.45, "adapter": 0.71, "ssf": 0.16,
               "vpt": 0.02, "petite": 0.32, "full": 100.0},
    "unetr": {"layernorm": 0.037, "bitfit": 0.07, "lora": 0.46, "adapter": 0.44, "ssf": 0.11,
              "vpt": 0.038, "petite": 0.51, "full": 100.0},
}

# Paper Tables 6 (CvT-GAN) and 7 (UNETR): (encoder method, decoder method) -> % parameters,
# every mix with BitFit everywhere and the tables' hyperparameters (the per-part defaults).
MIX_PERCENT: Dict[str, Dict[Tuple[str, str], float]] = {
    "cvtgan": {("lora", "adapter"): 0.69, ("lora", "ssf"): 0.58, ("lora", "vpt"): 0.28,
               ("adapter", "lora"): 0.69, ("adapter", "ssf"): 0.78, ("adapter", "vpt"): 0.87,
               ("vpt", "lora"): 0.32, ("vpt", "adapter"): 0.28, ("vpt", "ssf"): 0.46,
               ("ssf", "lora"): 0.35, ("ssf", "adapter"): 0.29, ("ssf", "vpt"): 0.38},
    "unetr": {("lora", "adapter"): 0.51, ("lora", "ssf"): 0.51,
              ("adapter", "lora"): 0.64, ("adapter", "ssf"): 0.95,
              ("vpt", "lora"): 0.53, ("vpt", "adapter"): 0.42, ("vpt", "ssf"): 0.11,
              ("ssf", "adapter"): 0.28, ("ssf", "lora"): 0.52},
}


@dataclass(frozen=True)
class CatalogueEntry:
    """A listed configuration: ``name`` (e.g. "lora", "petite", "mix:vpt/lora"), ``kind``
    ("method", "preset", "full" or "mix"), ``spec`` text, and the paper's percentage."""

    name: str
    kind: str
    spec: str
    paper_percent: Optional[float]


def method_catalogue(backbone: str) -> List[CatalogueEntry]:
    """Every single method, ``petite``, ``full`` and each Table 6/7 mix for ``backbone``."""
    table1 = TABLE1_PERCENT[backbone]
    entries = [CatalogueEntry(name, "method", name, table1.get(name)) for name in METHODS]  # gvpt: not in the paper
    entries.append(CatalogueEntry("petite", "preset", "petite", table1["petite"]))
    entries.append(CatalogueEntry(FULL_FINE_TUNING, "full", FULL_FINE_TUNING, table1["full"]))
    for (encoder, decoder), percent in MIX_PERCENT[backbone].items():
        entries.append(CatalogueEntry(f"mix:{encoder}/{decoder}", "mix",
                                      f"enc={encoder}+dec={decoder}+bitfit", percent))
    return entries
