"""What the validation-subject measurements (``gain_by_layers.py``, ``spec_candidates.py``) share:
a base model on the CPU with a cohort split as ``petite finetune --seed S --val-subjects N``
split it, head PSNR on those validation subjects, the common options and the machine record."""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch


def load_base_and_split(base: Path, cohort: Path, val_subjects: int, seed: int) -> tuple:
    """(the base's model on the CPU, the cohort's training data split as fine-tuning split it,
    the fine-tuning settings whose overlap the validation uses)."""
    from PETITELib.engine.jobs import load_training_data
    from PETITELib.engine.models import load_base
    from PETITELib.engine.settings import finetune_defaults

    model = load_base(base, torch.device("cpu")).model
    settings = finetune_defaults(model.backbone_name, model.preset, "full").with_overrides(val_subjects=val_subjects)
    return model, load_training_data(cohort, settings, seed), settings


def validation_psnr(model, data, settings) -> float:
    """Head PSNR in dB of ``model`` on the split's validation subjects (whole volumes against
    the long scan, as training validates)."""
    from PETITELib.engine.batches import whole_volume_validator

    model.eval()
    with torch.no_grad():
        return whole_volume_validator(model, data.val, torch.device("cpu"), settings.overlap)()["psnr"]


def add_split_options(parser: argparse.ArgumentParser) -> None:
    """--base, --cohort, --val-subjects, --seed and --out (the JSON to write)."""
    parser.add_argument("--base", type=Path, required=True)
    parser.add_argument("--cohort", type=Path, required=True)
    parser.add_argument("--val-subjects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)


def machine_record() -> dict:
    """The platform, torch version and thread count the measurement ran with."""
    return {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()}
