"""Generated section of docs/federated.md: the federated, pooled and single-site result."""
from __future__ import annotations

from pathlib import Path

from .sources import load_json

FEDERATED_JSON = "docs/benchmarks/federated-cpu.json"


def federated_table(root: Path) -> str:
    """Head PSNR/SSIM on the held-out subjects of every model of a ``petite federated bench`` run,
    the paired head-PSNR differences of the federated adapter against the pooled one and each
    site's own (over the same held-out subjects), the bytes each site sent per round, the base
    model's size and the simulator's wall time."""
    from ..engine.statistics import paired_difference  # SciPy: only when the table is made

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
    federated = document["federated"]["per_subject_psnr"]
    differences = [("pooled", document["federated_vs_pooled_psnr"])]
    differences += [(f"{entry['site']} alone", paired_difference(federated, entry["per_subject_psnr"]))
                    for entry in document["local"]]
    lines += [""] + [f"- Federated - {name}: {d['mean']:+.4f} dB (95 % CI {d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f}, "
                     f"Wilcoxon p {d['wilcoxon_p']:.3f}, n {d['n']})." for name, d in differences]
    lines += [
              f"- Sent per site and round: {document['bytes_per_round_per_site'] / 1e6:.3f} MB; the base model file: "
              f"{document['base_bytes'] / 1e6:.1f} MB.",
              f"- FLARE simulator wall time: {document['seconds']:.0f} s.",
              "- Targets: " + ", ".join(f"{name} {'met' if met else 'not met'}"
                                        for name, met in document["targets"].items()) + "."]
    return "\n".join(lines) + "\n"
