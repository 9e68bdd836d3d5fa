"""Fine-tuning cost (wall time, step time, peak memory) and reconstruction time of the paper-size
backbones on one device: the measurement behind the README's GPU figures.

Usage: python Testing/benchmarks/paper_preset_cost.py --device cuda --out cost.json [--epochs 3]

It simulates a small scanner-4 cohort (fast surrogate), builds a paper-preset base of each
backbone (weights at their initial values: cost does not depend on them), fine-tunes Full-FT, PETITE and
PETITE with activation checkpointing for a few epochs at batch 6 with the engine, each run in a fresh process, and times a
whole-volume reconstruction of a 192x192x136 scanner-1 volume. Prints and writes JSON with the
configuration and the machine.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def machine(device: str) -> dict:
    """Machine description: CPU, threads, torch version and the accelerator's name."""
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def finetune_in_child(cohort: Path, base: Path, spec: str, out: Path, epochs: int, device: str,
                      checkpointing: bool) -> dict:
    """Run one fine-tuning in a fresh process and return its training summary (adapter metadata)."""
    code = ("import sys, json; from PETITELib.api import finetune; from PETITELib.engine.models import describe_weights;"
            f"p = finetune({str(cohort)!r}, base={str(base)!r}, peft={spec!r}, out={str(out)!r}, "
            f"epochs={epochs}, device={device!r}, val_subjects=2, val_every={epochs}, "
            f"checkpointing={checkpointing});"
            "print('SUMMARY', json.dumps(describe_weights(p)['training']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"finetune {spec} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("SUMMARY ")][-1]
    return json.loads(line[len("SUMMARY "):])


def reconstruction_seconds(base: Path, adapter: Path, device: str) -> dict:
    """Time a whole-volume reconstruction of a simulated 192x192x136 scanner-1 volume (2nd of 2 runs)."""
    from PETITELib.api import reconstruct
    from PETITELib.data.simulator import simulate_scan

    scan = simulate_scan(1, subject_index=0, seed=0, mode="fast")
    times = []
    for _ in range(2):
        start = time.perf_counter()
        reconstruct(scan.short, scan.affine, base=base, adapter=adapter, device=device)
        times.append(time.perf_counter() - start)
    return {"shape": list(scan.short.shape), "first_s": round(times[0], 2), "second_s": round(times[1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--backbones", default="unetr,cvtgan")
    parser.add_argument("--preset", default="paper")
    args = parser.parse_args()

    from PETITELib.backbones import build_backbone, build_discriminator, BACKBONES
    from PETITELib.data.simulator import simulate_cohort
    from PETITELib.peft import save_base_model

    work = Path(tempfile.mkdtemp(prefix="petite-cost-"))
    simulate_cohort(work / "sim", scanners=(4,), subjects=args.subjects, seed=0, mode="fast")
    cohort = work / "sim" / "scanner4"
    result = {"config": {"preset": args.preset, "epochs": args.epochs, "batch_size": 6,
                         "subjects": args.subjects, "val_subjects": 2, "cohort": "scanner 4, fast surrogate",
                         "weights": "initial (cost only)"},
              "machine": machine(args.device), "backbones": {}}
    for name in args.backbones.split(","):
        base = work / f"{name}-base.safetensors"
        disc = build_discriminator(name, args.preset) if BACKBONES[name].build_discriminator else None
        save_base_model(base, build_backbone(name, args.preset), discriminator=disc)
        runs = {}
        for spec, checkpointing in (("full", False), ("petite", False), ("petite", True)):
            label = spec + ("+checkpointing" if checkpointing else "")
            summary = finetune_in_child(cohort, base, spec, work / f"{name}-{label}.safetensors",
                                        args.epochs, args.device, checkpointing)
            runs[label] = {k: summary.get(k) for k in ("percent", "wall_seconds", "step_seconds",
                                                       "peak_mem_mb", "device", "trainable_parameters")}
            print(name, label, json.dumps(runs[label]), flush=True)
        runs["reconstruction_192x192x136"] = reconstruction_seconds(
            base, work / f"{name}-petite.safetensors", args.device)
        print(name, "reconstruction", json.dumps(runs["reconstruction_192x192x136"]), flush=True)
        result["backbones"][name] = runs
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
