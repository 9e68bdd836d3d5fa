"""Generated text from the shipped model zoo's manifest (Resources/Models/manifest.json)."""
from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "Resources/Models/manifest.json"


def _score(metrics: dict, key: str, sd: bool = True) -> str:
    entry = metrics[key]
    mean = entry.get("mean", entry)
    spread = f" ± {entry['sd']['psnr']:.2f}" if sd and "sd" in entry else ""
    return f"{mean['psnr']:.2f}{spread} dB / {mean['ssim']:.3f}"


def _grid(scanner: dict) -> str:
    matrix = "x".join(str(n) for n in scanner["matrix"])
    spacing = scanner["spacing"]
    size = f"{spacing[0]:g}" if len(set(spacing)) == 1 else "x".join(f"{v:g}" for v in spacing)
    return f"scanner {scanner['id']}, {scanner['manufacturer']}, {matrix} at {size} mm"


def _backbone_order(manifest: dict) -> list:
    """The zoo's backbones in manifest order of their base models."""
    return list(dict.fromkeys(e.get("backbone", "unetr") for e in manifest["models"] if e["kind"] == "base"))


def zoo_models_table(root: Path) -> str:
    """The shipped models with their held-out scores (PSNR mean ± sd / SSIM inside the head),
    each backbone's base first, then its adapters by scanner."""
    manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    lines = ["| model | scanner (matrix at spacing) | file, size | subjects | short scan | base alone | "
             "base + adapter | adapter's gain |", "|---|---|---|---|---|---|---|---|"]
    order = _backbone_order(manifest)
    adapters = []
    models = sorted(manifest["models"], key=lambda e: (order.index(e.get("backbone", "unetr")), e["kind"] != "base",
                                                       e["scanner"]["id"]))
    for entry in models:
        metrics = entry["metrics"]
        mb = entry["size"] / 2 ** 20  # MB as the manifest's total_mb counts them (2^20 bytes)
        size = f"{mb:.2f} MB" if mb < 1 else f"{mb:.1f} MB"
        cells = [f"`{entry['name']}`", _grid(entry["scanner"]), f"`{entry['file']}`, {size}",
                 f"{len(metrics['subjects'])}"]
        if entry["kind"] == "base":
            cells[0] += f" ({entry['backbone']}, {entry['preset']} preset)"
            cells[1] += " (source)"
            cells[3] += " (validation)"
            cells += [_score(metrics, "input"), _score(metrics, "base"), "-", "-"]
        else:
            adapters.append(entry)
            gain = metrics["adapter"]["mean"]["psnr"] - metrics["no-ft"]["mean"]["psnr"]
            cells += [_score(metrics, "input"), _score(metrics, "no-ft"), _score(metrics, "adapter"), f"{gain:+.2f} dB"]
        lines.append("| " + " | ".join(cells) + " |")
    shares = []
    for backbone in order:
        mine = [e for e in adapters if e.get("backbone", "unetr") == backbone]
        if mine:
            percents = sorted({round(e["training"]["percent"], 2) for e in mine})
            shares.append(f"each {backbone} adapter trains {', '.join(f'{p:g}' for p in percents)} % of its "
                          f"base's parameters (spec `{mine[0]['spec']}`)")
    lines += ["", "In this zoo " + "; ".join(shares) + f". The zoo holds {manifest['total_mb']:g} MB in all. "
              + _ordering(adapters, "psnr", "PSNR") + " " + _ordering(adapters, "ssim", "SSIM")]
    return "\n".join(lines) + "\n"


def _ordering(adapters, metric: str, title: str) -> str:
    """Whether base + adapter > base alone > short scan in mean ``metric`` on every target scanner."""
    def mean(entry, key):
        return entry["metrics"][key]["mean"][metric]

    failed = [f"{e['name']} (adapter {mean(e, 'adapter'):.3g}, base {mean(e, 'no-ft'):.3g}, "
              f"short scan {mean(e, 'input'):.3g})" for e in adapters
              if not mean(e, "adapter") > mean(e, "no-ft") > mean(e, "input")]
    if not failed:
        return f"In mean {title}, base + adapter beats the base alone, which beats the short scan, for every adapter."
    return (f"In mean {title}, base + adapter beats the base alone, which beats the short scan, for every adapter "
            f"except " + "; ".join(failed) + ".")


def zoo_recipe(root: Path) -> str:
    """How the shipped models were made: the shared simulation commands, then each model's recorded
    command (the one that made its file), the split, the training times."""
    manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    rebuild = manifest["rebuild"]
    order = _backbone_order(manifest)
    models = sorted(manifest["models"], key=lambda e: (order.index(e.get("backbone", "unetr")), e["kind"] != "base"))
    simulate = [c for c in rebuild["commands"] if c.startswith("petite simulate")]
    lines = ["```", *simulate, *(e["command"] for e in models), "```", "", f"Split: {rebuild['split']}."]
    bases = [e for e in models if e["kind"] == "base"]
    adapters = [e for e in models if e["kind"] == "adapter"]
    times = ", ".join(f"{e['name']} {e['training']['wall_seconds'] / 60:.1f} min" for e in adapters)
    devices = sorted({e["training"]["device"] for e in adapters})
    lines += ["", f"Held out: {bases[0]['metrics']['held_out']} for each base; "
                  f"{len(adapters[0]['metrics']['subjects'])} subjects of each target scanner that no training saw "
                  f"for the adapters. Fine-tuning wall time per adapter ({', '.join(devices)}): {times}."]
    if rebuild.get("kept"):
        lines += ["", f"The last rebuild ({', '.join(rebuild.get('rebuilt', []))}) kept the "
                      f"{', '.join(rebuild['kept'])} models of the zoo before it, with the commands that made them."]
    lines += ["", f"Half precision: {manifest['half_precision']['note']}."]
    return "\n".join(lines) + "\n"
