"""``petite pretrain`` and ``petite finetune``: full training of a base model and PEFT fine-tuning."""
from __future__ import annotations

import sys

from .. import api
from ..data.cohort import SPLIT_STAGE
from .options import add_device, add_seed, add_training_overrides, progress_bar

OVERRIDES = ("epochs", "lr", "weight_decay", "batch_size", "crops_per_subject", "val_subjects",
             "val_every", "patience", "overlap", "checkpointing", "compile")


def _overrides(args) -> dict:
    return {name: getattr(args, name) for name in OVERRIDES if getattr(args, name) is not None}


class _SplitSaid:
    """The command's progress callback that also says the train/validation split as one line on
    stderr when training starts (even with --quiet): how many subjects train and how many validate."""

    def __init__(self, progress) -> None:
        self._progress = progress

    def __call__(self, event) -> None:
        if event.stage == SPLIT_STAGE:
            from tqdm import tqdm

            tqdm.write(event.message, file=sys.stderr)
        self._progress(event)

    def close(self) -> None:
        self._progress.close()


def run_pretrain(args) -> int:
    """Train a base model on a source-scanner cohort and print where it was written."""
    progress = _SplitSaid(progress_bar(args))
    try:
        out = api.pretrain(args.cohort, backbone=args.backbone, preset=args.preset, out=args.out,
                           seed=args.seed, device=args.device, resume=args.resume,
                           overwrite=args.overwrite, progress=progress, **_overrides(args))
    finally:
        progress.close()
    print(out)
    return 0


def run_finetune(args) -> int:
    """Fine-tune a base model on a target-scanner cohort and print where the adapter was written."""
    progress = _SplitSaid(progress_bar(args))
    try:
        out = api.finetune(args.cohort, base=args.base, peft=args.peft, out=args.out, seed=args.seed,
                           device=args.device, resume=args.resume, overwrite=args.overwrite,
                           progress=progress, **_overrides(args))
    finally:
        progress.close()
    print(out)
    return 0


def register(subparsers) -> None:
    """Add the ``pretrain`` and ``finetune`` sub-commands."""
    from ..backbones import BACKBONES

    pre = subparsers.add_parser(
        "pretrain", help="train a base model (all weights) on a source-scanner cohort",
        description="Full training on random 64^3 crops (head, edge and background) of a cohort: UNETR "
                    "with an L1 loss, CvT-GAN with 100 x L1 + a patch-GAN loss (the discriminator is "
                    "saved too). AdamW, cosine schedule; the best epoch by whole-volume, head-masked "
                    "validation PSNR is written to OUT. A checkpoint after every epoch (OUT.ckpt/) "
                    "lets --resume continue after a crash or Ctrl-C.")
    pre.add_argument("--cohort", required=True, help="source-scanner cohort folder")
    pre.add_argument("--backbone", required=True, choices=sorted(BACKBONES))
    pre.add_argument("--preset", default="cpu", choices=("paper", "cpu"),
                     help="model size: paper (as published) or cpu (small, trains on a laptop); default cpu")
    pre.add_argument("--out", required=True, help="base model file to write (.safetensors)")
    add_seed(pre)
    add_device(pre)
    add_training_overrides(pre)
    pre.set_defaults(func=run_pretrain)

    fine = subparsers.add_parser(
        "finetune", help="fine-tune a base model for a new scanner with a PEFT method",
        description="Parameter-efficient fine-tuning of BASE on a target-scanner cohort; only the "
                    "method's parameters train (the CvT-GAN discriminator stays frozen). Defaults per "
                    "method follow the paper's supplementary Table 3; every one can be overridden. "
                    "OUT is an adapter file (or a full model for --peft full) recording the spec, "
                    "epochs, best epoch, validation metrics, wall time, peak memory and device.")
    fine.add_argument("--base", help="base model file (.safetensors) from petite pretrain, or a shipped "
                                     "name; default: the shipped base model (see 'petite zoo list')")
    fine.add_argument("--cohort", required=True, help="target-scanner cohort folder")
    fine.add_argument("--peft", default="petite",
                      help="PEFT spec: petite, full, layernorm, bitfit, fullres, lora, adapter, ssf, vpt, gvpt, or a mix "
                           "such as 'enc=lora+dec=ssf+bitfit' (see 'petite methods'); default petite")
    fine.add_argument("--out", required=True, help="adapter file to write (.safetensors)")
    add_seed(fine)
    add_device(fine)
    add_training_overrides(fine)
    fine.set_defaults(func=run_finetune)
