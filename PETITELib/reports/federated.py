"""Generated section of docs/federated.md: the federated, pooled and single-site result."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

FEDERATED_JSON = "docs/benchmarks/federated-cpu.json"


def federated_table(root: Path) -> str:
    """Head PSNR/SSIM on the held-out subjects of every model of a ``petite federated bench`` run,
    the bytes each site sent per round, the base model's size and the simulator's wall time."""
    document = load_json(root, FEDERATED_JSON)
    setup = document["setup"]
    rows = [("short scan (input)", document["input"]), ("base alone (No-FT)", document["no_ft"]),
            (f"federated ({setup['rounds']} rounds x {setup['local_epochs']} local epochs)", document["federated"]),
            ("pooled (all sites' subjects)", document["pooled"])]
    rows += [(f"{entry['site']} alone", entry) for entry in document["local"]]
    settings = "".join(f", {name.replace('_', ' ')} {value}" for name, value in sorted(setup["settings"].items()))
    lines = [f"Held-out subjects: {len(document['test_subjects'])}; {setup['sites']} sites of scanner "
             f"{setup['scanner']} with {setup['train_subjects']} training subjects each; {setup['peft']}, "
             f"{setup['epochs']} epochs for the pooled and single-site runs{settings}.", "",
             "| model | head PSNR (dB) | head SSIM |", "|---|---|---|"]
    lines += [f"| {name} | {entry['psnr']:.3f} | {entry['ssim']:.4f} |" for name, entry in rows]
    difference = document["federated_vs_pooled_psnr"]
    lines += ["", f"- Federated - pooled: {difference['mean']:+.3f} dB (95 % CI {difference['ci95'][0]:+.3f} to "
                  f"{difference['ci95'][1]:+.3f}, Wilcoxon p {difference['wilcoxon_p']:.3f}, n {difference['n']}).",
              f"- Sent per site and round: {document['bytes_per_round_per_site'] / 1e6:.3f} MB; the base model file: "
              f"{document['base_bytes'] / 1e6:.1f} MB.",
              f"- FLARE simulator wall time: {document['seconds']:.0f} s.",
              "- Targets: " + ", ".join(f"{name} {'met' if met else 'not met'}"
                                        for name, met in document["targets"].items()) + "."]
    return "\n".join(lines) + "\n"
