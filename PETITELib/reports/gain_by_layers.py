"""Generated text from docs/benchmarks/gain-by-layers-{unetr,cvtgan}-cpu.json
(``Testing/benchmarks/gain_by_layers.py``): which layers of a base hold a Full-FT model's gain
on a new scanner, on that scanner's validation subjects."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

UNETR_GAIN = "docs/benchmarks/gain-by-layers-unetr-cpu.json"
CVTGAN_GAIN = "docs/benchmarks/gain-by-layers-cvtgan-cpu.json"


def gain_table_of(document: dict) -> str:
    """The table of one gain-by-layers document, with a line saying what was scored."""
    gain = document["psnr_finetuned"] - document["psnr_base"]
    lines = [f"{document['backbone']} ({document['preset']} preset) base `{document['base']['file']}` and "
             f"`{document['finetuned']['file']}` ({document['finetuned']['kind']}), on "
             f"{len(document['val_subjects'])} validation subjects of `{document['cohort']}` "
             f"({', '.join(document['val_subjects'])}): base {document['psnr_base']:.2f} dB, "
             f"fine-tuned {document['psnr_finetuned']:.2f} dB (gain {gain:+.2f} dB).", "",
             "| layer group | parameters | base + only this group fine-tuned | share of the gain | "
             "fine-tuned but this group left as the base | share of the gain |", "|---|---|---|---|---|---|"]
    def percent(share: float) -> str:
        return f"{round(100 * share) + 0:d} %"  # + 0: no "-0 %"

    for row in document["groups"]:
        lines.append(f"| {row['group']} | {row['parameters']:,} ({row['percent']:.3f} %) | "
                     f"{row['psnr_only']:.2f} dB | {percent(row['share_only'])} | "
                     f"{row['psnr_all_but']:.2f} dB | {percent(row['share_all_but'])} |")
    return "\n".join(lines) + "\n"


def gain_table(root: Path, relative: str) -> str:
    """The committed measurement at ``relative`` (e.g. UNETR_GAIN) as a table."""
    return gain_table_of(load_json(root, relative))
