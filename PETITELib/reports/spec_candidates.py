"""Generated text from docs/benchmarks/cvtgan-spec-candidates.json
(``Testing/benchmarks/spec_candidates.py``): candidate PETITE specs against Full-FT on one
scanner's validation subjects, the measurement behind a model preset's ``petite`` spec."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

CVTGAN_CANDIDATES = "docs/benchmarks/cvtgan-spec-candidates.json"


def candidates_table_of(document: dict) -> str:
    """The table of one candidates document (best validation head PSNR per run), with a line
    saying what was scored."""
    full = document["reference"]
    lines = [f"{document['backbone']} ({document['preset']} preset) base `{document['base']['file']}`, on "
             f"{len(document['val_subjects'])} validation subjects of `{document['cohort']}` "
             f"({', '.join(document['val_subjects'])}): base {document['psnr_base']:.3f} dB, Full-FT "
             f"(peak learning rate {full['lr']:g}) {full['best_val_psnr']:.3f} dB at epoch {full['best_epoch']} "
             f"of {full['epochs_run']}.", "",
             "| spec | trainable parameters | peak learning rate | best validation PSNR (epoch / run) | "
             "share of Full-FT's gain |", "|---|---|---|---|---|"]
    for run in document["candidates"]:
        lines.append(f"| `{run['spec']}` | {run['trainable_parameters']:,} ({run['percent']:.3f} %) | {run['lr']:g} | "
                     f"{run['best_val_psnr']:.3f} dB ({run['best_epoch']}/{run['epochs_run']}) | "
                     f"{round(100 * run['share_of_full_gain']) + 0:d} % |")
    return "\n".join(lines) + "\n"


def candidates_table(root: Path, relative: str) -> str:
    """The committed measurement at ``relative`` (e.g. CVTGAN_CANDIDATES) as a table."""
    return candidates_table_of(load_json(root, relative))
