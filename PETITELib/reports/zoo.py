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


def zoo_models_table(root: Path) -> str:
    """The shipped models with their held-out scores (PSNR mean ± sd / SSIM inside the head)."""
    manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    lines = ["| model | scanner (matrix at spacing) | file, size | subjects | short scan | base alone | "
             "base + adapter | adapter's gain |", "|---|---|---|---|---|---|---|---|"]
    adapters = []
    models = sorted(manifest["models"], key=lambda e: (e["kind"] != "base", e["scanner"]["id"]))
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
    percents = sorted({round(entry["training"]["percent"], 2) for entry in adapters})
    lines += ["", f"Each adapter trains {', '.join(f'{p:g}' for p in percents)} % of the base's parameters "
                  f"(spec `{adapters[0]['spec']}`); the zoo holds {manifest['total_mb']:g} MB in all. "
                  + _ordering(adapters, "psnr", "PSNR") + " " + _ordering(adapters, "ssim", "SSIM")]
    return "\n".join(lines) + "\n"


def _ordering(adapters, metric: str, title: str) -> str:
    """Whether base + adapter > base alone > short scan in mean ``metric`` on every target scanner."""
    def mean(entry, key):
        return entry["metrics"][key]["mean"][metric]

    failed = [f"scanner {e['scanner']['id']} (adapter {mean(e, 'adapter'):.3g}, base {mean(e, 'no-ft'):.3g}, "
              f"short scan {mean(e, 'input'):.3g})" for e in sorted(adapters, key=lambda e: e["scanner"]["id"])
              if not mean(e, "adapter") > mean(e, "no-ft") > mean(e, "input")]
    if not failed:
        return f"In mean {title}, base + adapter beats the base alone, which beats the short scan, on every target scanner."
    return (f"In mean {title}, base + adapter beats the base alone, which beats the short scan, on every target "
            f"scanner except " + "; ".join(failed) + ".")


def zoo_recipe(root: Path) -> str:
    """How the shipped models were made: the recorded commands, the split, the training times."""
    manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    rebuild = manifest["rebuild"]
    lines = ["```", *rebuild["commands"], "```", "", f"Split: {rebuild['split']}."]
    base = next(e for e in manifest["models"] if e["kind"] == "base")
    adapters = sorted((e for e in manifest["models"] if e["kind"] == "adapter"), key=lambda e: e["scanner"]["id"])
    times = ", ".join(f"{e['name']} {e['training']['wall_seconds'] / 60:.1f} min" for e in adapters)
    devices = sorted({e["training"]["device"] for e in adapters})
    lines += ["", f"Held out: {base['metrics']['held_out']} for the base; {len(adapters[0]['metrics']['subjects'])} "
                  f"subjects of each target scanner that no training saw for the adapters. Fine-tuning wall time "
                  f"per adapter ({', '.join(devices)}): {times}.",
              "", f"Half precision: {manifest['half_precision']['note']}."]
    return "\n".join(lines) + "\n"
