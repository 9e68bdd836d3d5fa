"""Where the shipped models work: the measurement behind docs/reliability.md's accepted input domain.

Usage: python Testing/benchmarks/input_domain.py --out docs/benchmarks/input-domain.json

With the shipped UNETR base and its scanner adapters (chosen as ``--adapter auto`` does), on
scans of the fast simulator (seed 7, subject 1; not seen in training):

1. slabs: the short scan cut to N slices along z and along x (centred), reconstructed alone,
   scored against the long scan cut the same way (PSNR inside the head mask of the whole long
   scan, data range of the whole long scan), next to the input's PSNR and that of the whole-
   volume reconstruction cut afterwards;
2. ranges: the lowest and highest output value relative to the input's 99.9th percentile (low)
   and maximum (high), for whole volumes of the five scanners with the shipped models, for
   untrained models (CvT-GAN seeds 0-2, UNETR seed 0: cpu preset, random weights) and for an
   8 x 8 x 8 volume of uniform noise (5400-16800 Bq/mL, the issue's example).

The reconstruction is the engine's (normalise, 64^3 tiles with 25 % overlap, denormalise) with
no domain or range check, so that what would be refused can be measured. Writes JSON and a
markdown table next to it; prints the table.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

SLICES = (8, 12, 16, 20, 24, 32, 48, 64)
SEED, SUBJECT = 7, 1


def raw_reconstruction(model, volume, spacing, device):
    """What :func:`PETITELib.engine.inference.reconstruct_volume` computes, without its checks."""
    from PETITELib.data.normalization import denormalize, normalization_factor, normalize
    from PETITELib.engine.inference import sliding_window_predict

    factor = normalization_factor(volume, spacing)
    return denormalize(sliding_window_predict(model, normalize(volume, factor), device=device), factor)


def output_range(output, source) -> dict:
    """Output extremes relative to the input: min / input's 99.9th percentile, max / input's maximum."""
    return {"min_over_p999": round(float(output.min() / np.percentile(source, 99.9)), 4),
            "max_over_max": round(float(output.max() / source.max()), 4)}


def psnr(a, b, value_range, mask) -> float:
    return round(float(10 * np.log10(value_range ** 2 / np.mean((a[mask] - b[mask]) ** 2))), 3)


def model_for(scan, device):
    from PETITELib.engine.models import load_for_inference
    from PETITELib.zoo import choose_models

    spacing = tuple(float(v) for v in np.linalg.norm(scan.affine[:3, :3], axis=0))
    choice = choose_models(None, "auto", shape=scan.short.shape, spacing=spacing)
    return load_for_inference(choice.base, choice.adapter, device), spacing, choice


def slabs(scanner: int, device) -> list:
    """PSNR of slab reconstructions (see the module docstring) for one scanner."""
    from PETITELib.data.simulator import simulate_scan
    from PETITELib.metrics import metric_mask

    scan = simulate_scan(scanner, subject_index=SUBJECT, seed=SEED, mode="fast")
    model, spacing, _ = model_for(scan, device)
    whole = raw_reconstruction(model, scan.short, spacing, device)
    mask, value_range = metric_mask(scan.long, spacing), float(scan.long.max())
    rows = []
    for axis in (2, 0):
        for n in SLICES:
            start = scan.short.shape[axis] // 2 - n // 2
            cut = [slice(None)] * 3
            cut[axis] = slice(start, start + n)
            cut = tuple(cut)
            short = np.ascontiguousarray(scan.short[cut])
            output = raw_reconstruction(model, short, spacing, device)
            rows.append({"scanner": scanner, "axis": "xyz"[axis], "voxels": n,
                         "mm": round(n * spacing[axis], 1),
                         "psnr_input": psnr(short, scan.long[cut], value_range, mask[cut]),
                         "psnr_slab": psnr(output, scan.long[cut], value_range, mask[cut]),
                         "psnr_whole_cut": psnr(whole[cut], scan.long[cut], value_range, mask[cut]),
                         **output_range(output, short)})
            print(rows[-1], flush=True)
    return rows


def ranges(device) -> dict:
    """Output ranges of trained models, untrained models and the noise cube (module docstring)."""
    import torch

    from PETITELib.backbones import build_backbone
    from PETITELib.data.simulator import simulate_scan
    from PETITELib.engine.models import load_for_inference

    found = {}
    for scanner in (1, 2, 3, 4, 5):
        scan = simulate_scan(scanner, subject_index=SUBJECT, seed=SEED, mode="fast")
        model, spacing, choice = model_for(scan, device)
        used = Path(choice.adapter).name if choice.adapter else "base alone: no shipped adapter for this scanner"
        found[f"scanner{scanner} shipped ({used})"] = output_range(
            raw_reconstruction(model, scan.short, spacing, device), scan.short)
    scan = simulate_scan(4, subject_index=SUBJECT, seed=SEED, mode="fast")
    spacing = tuple(float(v) for v in np.linalg.norm(scan.affine[:3, :3], axis=0))
    for name, seed in (("cvtgan", 0), ("cvtgan", 1), ("cvtgan", 2), ("unetr", 0)):
        torch.manual_seed(seed)
        model = build_backbone(name, "cpu").to(device).eval()
        found[f"untrained {name} seed {seed} (scanner 4)"] = output_range(
            raw_reconstruction(model, scan.short, spacing, device), scan.short)
    noise = np.random.default_rng(0).uniform(5400.0, 16800.0, (8, 8, 8)).astype(np.float32)
    base = load_for_inference(model_for(scan, device)[2].base, None, device)
    found["8x8x8 uniform noise, shipped base"] = output_range(
        raw_reconstruction(base, noise, (2.0, 2.0, 2.0), device), noise)
    return found


def markdown(result: dict) -> str:
    lines = ["# Input domain: slab reconstructions and output ranges", "",
             f"Measured by `Testing/benchmarks/input_domain.py` ({result['seconds']:.0f} s, {result['machine']}).", "",
             "| scanner | axis | voxels | mm | PSNR input | PSNR slab alone | PSNR whole volume, cut | "
             "min / p99.9 | max / max |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["slabs"]:
        lines.append(f"| {r['scanner']} | {r['axis']} | {r['voxels']} | {r['mm']} | {r['psnr_input']:.2f} | "
                     f"{r['psnr_slab']:.2f} | {r['psnr_whole_cut']:.2f} | {r['min_over_p999']:+.3f} | "
                     f"{r['max_over_max']:.3f} |")
    lines += ["", "| volume and model | min / input's p99.9 | max / input's max |", "|---|---|---|"]
    for name, r in result["ranges"].items():
        lines.append(f"| {name} | {r['min_over_p999']:+.3f} | {r['max_over_max']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON to write (a .md table is written beside it)")
    args = parser.parse_args()
    device = torch.device("cpu")
    started = time.perf_counter()
    with torch.inference_mode():
        result = {"slabs": slabs(4, device) + slabs(1, device), "ranges": ranges(device)}
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["machine"] = (f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
                         f"simulator seed {SEED} subject {SUBJECT} (fast mode)")
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
