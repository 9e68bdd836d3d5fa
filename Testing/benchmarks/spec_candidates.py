"""Compare candidate PEFT specs for a preset on one scanner's validation subjects: the measurement
behind a model preset's ``petite`` spec (hyperparameters.MODEL_PRESET_SPECS).

Usage: python Testing/benchmarks/spec_candidates.py --base BASE --cohort COHORT --reference FULL
       --candidate MODEL [--candidate MODEL ...] --out docs/benchmarks/cvtgan-spec-candidates.json
       [--val-subjects 2] [--seed 0]

FULL and each MODEL were fine-tuned from BASE on COHORT by ``petite finetune --seed S
--val-subjects N`` (FULL with ``--peft full``); the script refuses a model trained from another
base or validated on other subjects. It scores BASE on those validation subjects (whole
volumes, head PSNR against the long scan, as training validates) and takes each model's
validation curve and best validation PSNR from its file's training record; a model's share is
(its best - base) / (FULL's best - base). Test subjects are never read. Writes JSON; prints a
table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from validation_split import add_split_options, load_base_and_split, machine_record, validation_psnr


def _run_record(path: Path, base_sha256: str, val_ids: list) -> dict:
    """One fine-tuned model's spec, share of parameters, peak learning rate and validation curve."""
    from PETITELib.engine.models import describe_weights
    from PETITELib.nifti_io import file_sha256

    described = describe_weights(path)
    training = described["training"]
    if training.get("base_sha256") != base_sha256:
        raise SystemExit(f"{path}: fine-tuned from another base (SHA-256 {training.get('base_sha256')})")
    if training.get("val_subjects") != val_ids:
        raise SystemExit(f"{path}: validated on {training.get('val_subjects')}, not on {val_ids}")
    curve = [[entry["epoch"], round(entry["val_psnr"], 3)] for entry in training["history"] if "val_psnr" in entry]
    best = max(curve, key=lambda point: point[1])
    return {"file": path.name, "sha256": file_sha256(path), "spec": described.get("spec") or "full",
            "trainable_parameters": training.get("trainable_parameters"),
            "percent": round(training.get("percent") or 100.0, 3), "lr": training["settings"]["lr"],
            "epochs_run": training.get("epochs"), "best_epoch": best[0], "best_val_psnr": best[1],
            "curve": curve, "cpu_seconds": training.get("cpu_seconds")}


def measure(base: Path, cohort: Path, reference: Path, candidates: list, val_subjects: int, seed: int) -> dict:
    """The JSON document: the base's validation PSNR, the reference (Full-FT) run and each
    candidate run with its share of the reference's gain."""
    from PETITELib.peft.base_files import base_model_sha256

    started = time.perf_counter()
    model, data, settings = load_base_and_split(base, cohort, val_subjects, seed)
    psnr_base, val_ids = validation_psnr(model, data, settings), [s.subject_id for s in data.val]
    base_sha256 = base_model_sha256(base)
    full = _run_record(reference, base_sha256, val_ids)
    gain = full["best_val_psnr"] - psnr_base
    runs = []
    for path in candidates:
        run = _run_record(path, base_sha256, val_ids)
        runs.append({**run, "share_of_full_gain": round((run["best_val_psnr"] - psnr_base) / gain, 3)})
    return {
        "what": "candidate PETITE specs against Full-FT on one scanner's validation subjects (best "
                "validation head PSNR of each run; share of Full-FT's gain over the base)",
        "base": {"file": base.name, "sha256": base_sha256}, "backbone": model.backbone_name, "preset": model.preset,
        "cohort": cohort.name, "seed": seed, "val_subjects": val_ids, "psnr_base": round(psnr_base, 3),
        "reference": full, "candidates": runs,
        "machine": machine_record(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_options(parser)
    parser.add_argument("--reference", type=Path, required=True, help="the Full-FT model")
    parser.add_argument("--candidate", type=Path, action="append", required=True)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: already exists")
    document = measure(args.base, args.cohort, args.reference, args.candidate, args.val_subjects, args.seed)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    from PETITELib.reports.spec_candidates import candidates_table_of

    print(candidates_table_of(document))


if __name__ == "__main__":
    main()
