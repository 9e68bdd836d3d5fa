"""Training settings and their defaults per backbone, preset and PEFT method.

Fine-tuning learning rate and weight decay come from the PEFT registry (the paper's
supplementary Table 3); epochs, batch size and the rest from here. The ``paper`` preset
follows the paper (batch 6, 1000 pre-training epochs, 150 CvT-GAN / 200 UNETR fine-tuning
epochs, validation every epoch); the ``cpu`` preset shortens training and validates less
often so that a run fits a laptop. Every value can be overridden.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Optional

from ..errors import PetiteError
from .inference import DEFAULT_OVERLAP, check_overlap


@dataclass(frozen=True)
class TrainSettings:
    """One training run's settings.

    epochs: passes over the training crops; lr: peak learning rate (AdamW, cosine schedule
    per step, linear warm-up over ``warmup_fraction`` of the steps); batch_size: crops per step;
    crops_per_subject: 64^3 crops drawn per training subject per epoch (half centred in the
    head, half anywhere: air and edges too); val_subjects: validation subjects, a count
    (>= 1) or a fraction (< 1) of the cohort; val_every: validate every N epochs (and after
    the last); patience: stop after this many validations without a better validation PSNR (early
    stopping; 0: train every epoch, the best epoch is kept either way); overlap:
    sliding-window overlap for validation; checkpointing: recompute the
    transformer blocks' activations in the backward pass instead of storing them (less memory,
    more time; the result is the same); compile: run the generator's training forward through
    ``torch.compile`` (off by default: not shown to be faster, see docs/peft-cost.md).
    """

    epochs: int
    lr: float
    weight_decay: float
    batch_size: int = 6
    crops_per_subject: int = 4
    val_subjects: float = 0.3
    val_every: int = 1
    overlap: float = DEFAULT_OVERLAP
    warmup_fraction: float = 0.0
    checkpointing: bool = False
    patience: int = 0
    compile: bool = False

    def with_overrides(self, **overrides) -> "TrainSettings":
        """A copy with the given non-None values replaced, checked (PetiteError names the option)."""
        unknown = set(overrides) - set(asdict(self))
        if unknown:
            raise PetiteError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        settings = replace(self, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    def check(self) -> None:
        """Raise PetiteError (naming the command-line option) for an invalid value."""
        numbers = {"lr": self.lr, "weight-decay": self.weight_decay, "val-subjects": self.val_subjects,
                   "overlap": self.overlap, "warmup-fraction": self.warmup_fraction}
        for option, value in numbers.items():
            if not math.isfinite(value):
                raise PetiteError(f"--{option} {value}: must be a finite number")
        positive_ints = {"epochs": self.epochs, "batch-size": self.batch_size,
                         "crops-per-subject": self.crops_per_subject, "val-every": self.val_every}
        for option, value in positive_ints.items():
            if int(value) != value or value < 1:
                raise PetiteError(f"--{option} {value}: must be a positive integer")
        if not self.lr > 0:
            raise PetiteError(f"--lr {self.lr}: must be positive")
        if int(self.patience) != self.patience or self.patience < 0:
            raise PetiteError(f"--patience {self.patience}: must be a non-negative integer")
        if self.weight_decay < 0:
            raise PetiteError(f"--weight-decay {self.weight_decay}: must not be negative")
        check_overlap(self.overlap)
        if not self.val_subjects > 0 or (self.val_subjects >= 1 and self.val_subjects != int(self.val_subjects)):
            raise PetiteError(f"--val-subjects {self.val_subjects}: a count (>= 1) or a fraction in (0, 1)")

    @property
    def validation_size(self):
        """``val_subjects`` as :func:`PETITELib.data.pipeline.split_subjects` wants it (int or fraction)."""
        return int(self.val_subjects) if self.val_subjects >= 1 else float(self.val_subjects)

    def as_dict(self) -> dict:
        """JSON-serialisable copy (for metadata and checkpoint compatibility)."""
        return asdict(self)


# Pre-training per preset. Learning rates: paper preset as published for long runs (UNETR
# 1e-4, CvT-GAN 2e-4); cpu preset 1e-3 with a 5 % warm-up, which learns within a few hundred
# steps (measured: UNETR +2.5 dB over its input after 200 steps of batch 2).
_PRETRAIN = {"paper": dict(epochs=1000, val_every=10, val_subjects=15),
             "cpu": dict(epochs=60, val_every=5, val_subjects=4)}
_PRETRAIN_LR = {("paper", "unetr"): 1e-4, ("paper", "cvtgan"): 2e-4,
                ("cpu", "unetr"): 1e-3, ("cpu", "cvtgan"): 1e-3}
_PRETRAIN_WARMUP = {("paper", "unetr"): 0.05, ("paper", "cvtgan"): 0.0,
                    ("cpu", "unetr"): 0.05, ("cpu", "cvtgan"): 0.05}
# Fine-tuning epochs per backbone (paper Sec. 3) and the cpu preset's shorter runs.
# cpu: 84 steps of batch 6 on ten subjects, about 6 minutes on one CPU thread (UNETR).
_FINETUNE_EPOCHS = {("paper", "unetr"): 200, ("paper", "cvtgan"): 150,
                    ("cpu", "unetr"): 12, ("cpu", "cvtgan"): 12}
_FINETUNE = {"paper": dict(val_every=1, val_subjects=15), "cpu": dict(val_every=4, val_subjects=2)}


def pretrain_defaults(backbone: str, preset: str) -> TrainSettings:
    """Default settings of ``petite pretrain`` for a backbone and preset."""
    return TrainSettings(lr=_PRETRAIN_LR[(preset, backbone)], weight_decay=1e-5,
                         warmup_fraction=_PRETRAIN_WARMUP[(preset, backbone)], **_PRETRAIN[preset])


def finetune_defaults(backbone: str, preset: str, lr: float, weight_decay: float,
                      warmup_fraction: Optional[float] = None) -> TrainSettings:
    """Default settings of ``petite finetune``; ``lr``/``weight_decay`` from the PEFT method."""
    return TrainSettings(epochs=_FINETUNE_EPOCHS[(preset, backbone)], lr=lr, weight_decay=weight_decay,
                         warmup_fraction=warmup_fraction or 0.0, **_FINETUNE[preset])
