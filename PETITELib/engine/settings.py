"""Training settings of one run, and their defaults per backbone, preset and PEFT method.

The default values live in one table, :mod:`PETITELib.hyperparameters`: pre-training per preset
and backbone; fine-tuning epochs and validation per preset and backbone, learning rate, weight
decay and warm-up per method (the paper's supplementary Table 3). The ``paper`` preset follows
the paper; the ``cpu`` preset shortens training and validates less often so that a run fits a
laptop. Every value can be overridden.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..errors import PetiteError
from ..hyperparameters import BATCH_SIZE, CROPS_PER_SUBJECT, FINETUNING, PRETRAINING
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
    batch_size: int = BATCH_SIZE
    crops_per_subject: int = CROPS_PER_SUBJECT
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


def pretrain_defaults(backbone: str, preset: str) -> TrainSettings:
    """Default settings of ``petite pretrain`` for a backbone and preset."""
    return TrainSettings(**PRETRAINING[(preset, backbone)])


def finetune_defaults(backbone: str, preset: str, spec) -> TrainSettings:
    """Default settings of ``petite finetune`` for a backbone and preset: epochs and validation
    from the preset, learning rate, weight decay and warm-up from the method's Table 3 column
    (``spec``: text or :class:`PETITELib.peft.PeftSpec`, see :func:`PETITELib.peft.default_hyperparameters`)."""
    from ..peft import default_hyperparameters

    column = default_hyperparameters(backbone, spec)
    return TrainSettings(lr=column.learning_rate, weight_decay=column.weight_decay,
                         warmup_fraction=column.warmup_fraction, **FINETUNING[(preset, backbone)])
