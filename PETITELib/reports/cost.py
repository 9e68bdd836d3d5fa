"""Generated sections of docs/peft-cost.md and the README: the measured step cost of each method
(docs/benchmarks/cost-cpu.json, made by ``petite bench-cost``) and the old-vs-new accuracy check."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

ACCURACY_JSON = "docs/benchmarks/petite-old-vs-new.json"
COST_CPU_JSON = "docs/benchmarks/cost-cpu.json"


def accuracy_check(root: Path) -> str:
    """Head PSNR of PETITE fine-tuned with the hook-based and the module-based PEFT layers
    (docs/benchmarks/petite-old-vs-new.json)."""
    document = load_json(root, ACCURACY_JSON)
    psnr = document["head_psnr_db"]
    return (f"| | head PSNR (dB) |\n|---|---|\n| short scan (input) | {psnr['input']:.4f} |\n"
            f"| base alone (No-FT) | {psnr['no_ft']:.4f} |\n| PETITE, hook-based layers | {psnr['old']:.6f} |\n"
            f"| PETITE, module layers | {psnr['new']:.6f} |\n| difference (new - old) | {psnr['new_minus_old']:.1e} |\n")


def cost_tables(root: Path) -> str:
    """Per backbone, every method's step time (and its phases), peak memory, activations kept for
    the backward pass, trainable parameters and ratios to Full-FT, with the command and machine
    (the body of docs/benchmarks/cost-cpu.md without its title)."""
    from ..engine.cost import cost_markdown

    document = load_json(root, COST_CPU_JSON)
    report = cost_markdown(document).split("\n", 2)[2].rstrip("\n").replace("\n## ", "\n### ")
    return report + "\n\n" + activations_by_layer(document)


def activations_by_layer(document: dict) -> str:
    """Per backbone, what autograd keeps for one step's backward pass (MiB), by the type of the
    layer that saved it (rows) and method (columns), from a ``petite bench-cost`` result."""
    parts = []
    for backbone, entry in document["backbones"].items():
        methods = entry["methods"]
        layers = sorted({layer for m in methods.values() for layer in m["activations_by_layer_mb"]},
                        key=lambda layer: -max(m["activations_by_layer_mb"].get(layer, 0.0) for m in methods.values()))
        rows = [f"### Activations kept for the backward pass, {backbone}, by layer type (MiB)", "",
                "| layer type | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for layer in layers:
            rows.append(f"| {layer} | " + " | ".join(f"{m['activations_by_layer_mb'].get(layer, 0.0):.0f}"
                                                     for m in methods.values()) + " |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def cost_summary(root: Path) -> str:
    """README table: per backbone, Full-FT's and PETITE's step time and peak memory on the CPU,
    PETITE's ratios to Full-FT, whether they meet the targets and the PETITE spec measured
    (docs/benchmarks/cost-cpu.json)."""
    from ..engine.bench import TARGET_MEMORY_RATIO, TARGET_TIME_RATIO

    document = load_json(root, COST_CPU_JSON)
    rows = ["| backbone (cpu preset, batch 6, CPU) | Full-FT step s | PETITE step s | step / Full-FT "
            "| Full-FT peak MiB | PETITE peak MiB | peak / Full-FT | targets | PETITE spec |",
            "|---|---|---|---|---|---|---|---|---|"]
    for backbone, entry in document["backbones"].items():
        full, petite = entry["methods"]["full"], entry["methods"]["petite"]
        time_ratio, memory_ratio = petite["step_ratio_to_full"], petite["mem_ratio_to_full"]
        verdicts = [f"time <= {TARGET_TIME_RATIO}x {'met' if time_ratio <= TARGET_TIME_RATIO else 'not met'}",
                    f"peak <= {TARGET_MEMORY_RATIO}x {'met' if memory_ratio <= TARGET_MEMORY_RATIO else 'not met'}"]
        rows.append(f"| {backbone} | {full['step_seconds']:.2f} | {petite['step_seconds']:.2f} | {time_ratio:.2f} | "
                    f"{full['peak_mem_mb']:.0f} | {petite['peak_mem_mb']:.0f} | {memory_ratio:.2f} | "
                    f"{', '.join(verdicts)} | `{petite['spec']}` |")
    return "\n".join(rows) + "\n"
