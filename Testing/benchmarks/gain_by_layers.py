"""Where a fine-tuned model's gain over its base lives: the measurement behind ``fullres``.

Usage: python Testing/benchmarks/gain_by_layers.py --base BASE --finetuned MODEL --cohort COHORT
       --out docs/benchmarks/gain-by-layers-unetr-cpu.json [--val-subjects 2] [--seed 0]

MODEL is a Full-FT model file fine-tuned from BASE on COHORT (e.g. the benchmark's chosen
Full-FT run). COHORT is split exactly as ``petite finetune --seed S --val-subjects N`` split it,
and only its validation subjects are scored (whole volumes, head PSNR against the long scan, as
training validates). For each layer group of the backbone the script scores the base with that
group taken from MODEL ("only") and MODEL with that group put back to the base ("all but"),
and the share of MODEL's gain each keeps: (PSNR - base) / (MODEL - base). Writes JSON; prints
a table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from validation_split import add_split_options, load_base_and_split, machine_record, validation_psnr

# Layer groups per backbone, by parameter-name prefix (every parameter falls in exactly one).
GROUPS = {
    "unetr": {
        "ViT encoder": ("vit.",),
        "full-resolution path (encoder1, decoder2, out)": ("encoder1.", "decoder2.", "out."),
        "skip paths from the ViT (encoder2-4)": ("encoder2.", "encoder3.", "encoder4."),
        "lower decoder levels (decoder3-5)": ("decoder3.", "decoder4.", "decoder5."),
    },
    "cvtgan": {
        "stem": ("encoder.stem.",),
        "encoder stages": ("encoder.stage",),
        "decoder stages": ("decoder.stage",),
        "head (upsampling and output conv)": ("decoder.head.",),
    },
}


def measure(base: Path, finetuned: Path, cohort: Path, val_subjects: int, seed: int) -> dict:
    """The JSON document: the base's and MODEL's validation PSNR and, per group, "only" and
    "all but" PSNR with their share of the gain and the group's parameter count."""
    from PETITELib.engine.models import describe_weights, load_base
    from PETITELib.nifti_io import file_sha256

    model, data, settings = load_base_and_split(base, cohort, val_subjects, seed)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    tuned_state = load_base(finetuned, torch.device("cpu")).model.state_dict()
    groups = GROUPS[model.backbone_name]
    total = sum(p.numel() for p in model.parameters())
    names = dict(model.named_parameters())
    unassigned = [n for n in names if not any(n.startswith(prefixes) for prefixes in groups.values())]
    if unassigned:
        raise SystemExit(f"parameters in no group: {unassigned[:3]}")

    def score_with(state) -> float:
        model.load_state_dict(state)
        return validation_psnr(model, data, settings)

    finetuned_file = describe_weights(finetuned)
    started = time.perf_counter()
    psnr_base, psnr_tuned = score_with(base_state), score_with(tuned_state)
    gain = psnr_tuned - psnr_base
    rows = []
    for group, prefixes in groups.items():
        only = {k: (tuned_state[k] if k.startswith(prefixes) else v) for k, v in base_state.items()}
        all_but = {k: (base_state[k] if k.startswith(prefixes) else v) for k, v in tuned_state.items()}
        psnr_only, psnr_all_but = score_with(only), score_with(all_but)
        count = sum(p.numel() for n, p in names.items() if n.startswith(prefixes))
        rows.append({"group": group, "prefixes": list(prefixes), "parameters": count,
                     "percent": round(100 * count / total, 3),
                     "psnr_only": round(psnr_only, 3), "share_only": round((psnr_only - psnr_base) / gain, 3),
                     "psnr_all_but": round(psnr_all_but, 3),
                     "share_all_but": round((psnr_all_but - psnr_base) / gain, 3)})
    return {
        "what": "share of a Full-FT model's validation-PSNR gain over its base kept by each layer group",
        "base": {"file": base.name, "sha256": file_sha256(base)},
        "finetuned": {"file": finetuned.name, "sha256": file_sha256(finetuned),
                      "kind": finetuned_file["kind"], "lr": finetuned_file["training"].get("settings", {}).get("lr")},
        "cohort": cohort.name, "seed": seed, "val_subjects": [s.subject_id for s in data.val],
        "backbone": model.backbone_name, "preset": model.preset, "parameters": total,
        "psnr_base": round(psnr_base, 3), "psnr_finetuned": round(psnr_tuned, 3), "groups": rows,
        "machine": machine_record(),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_split_options(parser)
    parser.add_argument("--finetuned", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out}: already exists")
    document = measure(args.base, args.finetuned, args.cohort, args.val_subjects, args.seed)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    from PETITELib.reports.gain_by_layers import gain_table_of

    print(gain_table_of(document))


if __name__ == "__main__":
    main()
