"""``petite methods``: the PEFT methods, the ``petite`` preset, full fine-tuning and the paper's
Mix-PEFT combinations for a backbone, with their trainable parameters."""
from __future__ import annotations

import argparse
import json
from typing import Dict, List, Optional

import torch

from ..backbones import BACKBONES, PRESETS, build_backbone
from ..peft import (METHODS, CatalogueEntry, apply_peft, count_parameters, default_hyperparameters, method_catalogue,
                    remove_peft)


def register(subparsers) -> None:
    """Add the ``methods`` sub-command."""
    parser = subparsers.add_parser(
        "methods", help="list PEFT methods and mixes with their trainable parameters",
        description="List every PEFT method (the paper's Table 1 settings), the 'petite' preset, full "
                    "fine-tuning and every feasible Mix-PEFT (Tables 6/7, with BitFit), with trainable "
                    "parameters and their percentage of the base model.",
        epilog="methods: " + "; ".join(f"{m.name}: {m.description}" for m in METHODS.values()),
    )
    parser.add_argument("--backbone", required=True, choices=list(BACKBONES),
                        help="; ".join(f"{name}: {entry.description}" for name, entry in BACKBONES.items()))
    parser.add_argument("--preset", default="paper", choices=PRESETS, help="model size (default: paper)")
    parser.add_argument("--spec", help="count only this PEFT spec, e.g. 'enc=lora(r=8)+dec=ssf+bitfit'")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def method_rows(backbone: str, preset: str, spec: Optional[str] = None) -> List[Dict[str, object]]:
    """One dict per catalogue entry (or only for ``spec``, named "custom"): name, kind, spec
    (canonical), trainable, total, percent, paper_percent (None if the paper has none),
    learning_rate, weight_decay. Counts on a weightless (meta-device) model."""
    entries = method_catalogue(backbone) if spec is None else [CatalogueEntry("custom", "custom", spec, None)]
    with torch.device("meta"):
        model = build_backbone(backbone, preset)
    rows = []
    for entry in entries:
        spec = apply_peft(model, entry.spec)
        count = count_parameters(model)
        remove_peft(model)
        defaults = default_hyperparameters(backbone, spec)
        rows.append({"name": entry.name, "kind": entry.kind, "spec": spec.canonical,
                     "trainable": count.trainable, "total": count.total, "percent": round(count.percent, 4),
                     "paper_percent": entry.paper_percent, "learning_rate": defaults.learning_rate,
                     "weight_decay": defaults.weight_decay})
    return rows


def format_table(rows: List[Dict[str, object]]) -> str:
    """The rows as an aligned text table (numbers right-aligned, the spec last)."""
    header = ("name", "trainable", "%", "paper %", "lr", "wd", "spec")
    lines = [header] + [(str(r["name"]), f"{r['trainable']:,}", f"{r['percent']:.3f}",
                         "-" if r["paper_percent"] is None else f"{r['paper_percent']:g}",
                         f"{r['learning_rate']:g}", f"{r['weight_decay']:g}", str(r["spec"])) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join([line[0].ljust(widths[0])]
                               + [cell.rjust(width) for cell, width in zip(line[1:-1], widths[1:-1])]
                               + [line[-1]]) for line in lines)


def run(args: argparse.Namespace) -> int:
    """Print the method table (or JSON) for ``args.backbone`` at ``args.preset``."""
    rows = method_rows(args.backbone, args.preset, args.spec)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        total = rows[0]["total"]
        print(f"{args.backbone} ({args.preset} preset): {total:,} base parameters")
        print(format_table(rows))
    return 0
