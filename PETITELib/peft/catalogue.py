"""The rows ``petite methods`` lists: each single method with the paper's Table 1 settings, the
``petite`` preset, full fine-tuning, and every feasible Mix-PEFT of Tables 6 and 7 (with
BitFit), each with the paper's reported percentage of trainable parameters; and the fine-tuning
defaults (supplementary Table 3) a spec gets. The values live in :mod:`PETITELib.hyperparameters`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..hyperparameters import MIX_PERCENT, TABLE1_PERCENT, TABLE3, TABLE3_COLUMN_OF, MethodTraining
from .registry import FULL_FINE_TUNING, METHODS
from .spec import PeftSpec, parse_spec


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


def default_hyperparameters(backbone: str, spec) -> MethodTraining:
    """The supplementary Table 3 column ``spec`` (text or :class:`PeftSpec`) trains with on
    ``backbone``: a spec of one method (on any parts) gets that method's column, ``full`` the
    Full-FT column, any mix (including a method + BitFit) the PETITE column; ``gvpt`` (not in
    the paper) VPT's."""
    parsed: PeftSpec = parse_spec(spec, backbone)
    if parsed.full:
        return TABLE3[backbone]["full"]
    methods = parsed.methods
    column = methods[0] if len(methods) == 1 else "petite"
    return TABLE3[backbone][TABLE3_COLUMN_OF.get(column, column)]
