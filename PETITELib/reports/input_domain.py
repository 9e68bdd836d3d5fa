"""Generated text from docs/benchmarks/input-domain.json (``Testing/benchmarks/input_domain.py``):
output ranges of working and broken models, and what reconstructing a thin slab alone costs,
each against the limits of :mod:`PETITELib.input_domain`."""
from __future__ import annotations

from pathlib import Path
from .sources import load_json

INPUT_DOMAIN = "docs/benchmarks/input-domain.json"


def _span(values) -> str:
    low, high = min(values), max(values)
    return f"{low:.3f}" if low == high else f"{low:.3f} to {high:.3f}"


def output_ranges(root: Path) -> str:
    """Lowest output / the input's 99.9th percentile and highest output / the input's maximum,
    per kind of model, and whether the sane output range keeps them."""
    from ..input_domain import OUTPUT_HIGH, OUTPUT_LOW

    ranges = load_json(root, INPUT_DOMAIN)["ranges"]
    groups = {"shipped models, whole volumes of the five scanners": lambda n: n.startswith("scanner"),
              "untrained CvT-GANs (residual: input plus a random branch)": lambda n: n.startswith("untrained cvtgan"),
              "an untrained UNETR": lambda n: n.startswith("untrained unetr"),
              "an 8 x 8 x 8 volume of uniform noise, shipped base": lambda n: "noise" in n}
    lines = [f"| model and volume | lowest output / input's 99.9th percentile | highest output / input's maximum | "
             f"inside the sane range ({OUTPUT_LOW:g} x to {OUTPUT_HIGH:g} x) |", "|---|---|---|---|"]
    for title, belongs in groups.items():
        rows = [value for name, value in ranges.items() if belongs(name)]
        lows, highs = [r["min_over_p999"] for r in rows], [r["max_over_max"] for r in rows]
        kept = all(low >= OUTPUT_LOW for low in lows) and all(high <= OUTPUT_HIGH for high in highs)
        lines.append(f"| {title} ({len(rows)}) | {_span(lows)} | {_span(highs)} | {'yes' if kept else '**no**'} |")
    return "\n".join(lines) + "\n"


def slab_gains(root: Path) -> str:
    """PSNR gain (dB) of a slab reconstructed alone over the slab's input, per scanner, axis and
    thickness; which slabs the size rule refuses; what the rule costs and saves."""
    from ..input_domain import MIN_EXTENT_MM, MIN_VOXELS

    slabs = load_json(root, INPUT_DOMAIN)["slabs"]
    voxels = sorted({s["voxels"] for s in slabs})
    lines = ["| scanner, axis | " + " | ".join(f"{v} voxels" for v in voxels) + " |", "|---" * (len(voxels) + 1) + "|"]
    for scanner, axis in sorted({(s["scanner"], s["axis"]) for s in slabs}, key=lambda k: (-k[0], k[1] != "z", k[1])):
        row = {s["voxels"]: s for s in slabs if (s["scanner"], s["axis"]) == (scanner, axis)}
        cells = []
        for v in voxels:
            s = row.get(v)
            if s is None:
                cells.append("-")
                continue
            cell = f"{s['psnr_slab'] - s['psnr_input']:+.2f} ({s['mm']:g} mm)"
            cells.append(cell if v >= MIN_VOXELS and s["mm"] >= MIN_EXTENT_MM else f"{cell} ✗")
        lines.append(f"| {scanner}, {axis} | " + " | ".join(cells) + " |")
    refused = [s for s in slabs if not (s["voxels"] >= MIN_VOXELS and s["mm"] >= MIN_EXTENT_MM)]
    accepted = [s for s in slabs if s not in refused]
    gain = lambda s: s["psnr_slab"] - s["psnr_input"]  # noqa: E731
    accepted_losses = [gain(s) for s in accepted if gain(s) < 0]
    refused_gains = [gain(s) for s in refused if gain(s) > 0]
    lines += ["", f"✗: refused by the size rule ({MIN_VOXELS} voxels and {MIN_EXTENT_MM:g} mm along every axis), "
                  f"{len(refused)} of the {len(slabs)} slabs. Of the slabs it accepts, {len(accepted_losses)} came back "
                  "worse than they went in" + (f" (at most {-min(accepted_losses):.2f} dB)" if accepted_losses else "")
              + f"; of those it refuses, {len(refused_gains)} gained" + (f" (up to {max(refused_gains):+.2f} dB)"
                                                                        if refused_gains else "")
              + f". The outputs of all slabs stay in the sane range (lowest {min(s['min_over_p999'] for s in slabs):.4f} "
              f"x the input's 99.9th percentile, highest {max(s['max_over_max'] for s in slabs):.3f} x its maximum)."]
    return "\n".join(lines) + "\n"
