"""What pre-training and fine-tuning share: seeding, output checks, data, objective and the fit plan.

A training run seeds the global random generators (Python, numpy, torch) and asks cuDNN for
deterministic kernels, so that the same seed gives the same result. Those are settings of the
whole process: a run made from a host program (the Python console of 3D Slicer, a notebook)
must leave them as it found them. :func:`keeps_host_state` wraps each training entry point
(:func:`PETITELib.api.pretrain`, :func:`PETITELib.api.finetune`) and restores them afterwards;
nothing here changes torch's thread counts.
"""
from __future__ import annotations

import contextlib
import functools
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from ..data.cohort import Cohort, load_cohort
from ..data.pipeline import CropDataset, PreparedSubject, prepare_subjects, split_subjects
from ..errors import PetiteError
from ..progress import CancelToken, ProgressCallback
from .batches import epoch_batches, input_metrics, steps_per_epoch, whole_volume_validator
from .checkpoint import checkpoint_folder
from .distributed import Processes, distribute
from .objectives import AdversarialObjective, L1Objective, adamw
from .schedule import CosineSchedule
from .settings import TrainSettings
from .training import FitPlan, FitResult, fit

# Discriminator optimizer in pre-training (pix2pix practice: Adam-like with beta1 = 0.5).
DISCRIMINATOR_LR = 2e-4
DISCRIMINATOR_BETAS = (0.5, 0.999)
L1_WEIGHT = 100.0


@contextlib.contextmanager
def host_state_kept():
    """Save the process-wide state a training run changes (Python, numpy and torch CPU/CUDA
    random-generator states, cuDNN's ``deterministic`` and ``benchmark`` flags) and restore it
    on exit, whether the block ends, fails or is cancelled."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def keeps_host_state(function):
    """Decorator: run ``function`` inside :func:`host_state_kept` (for the training entry points)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with host_state_kept():
            return function(*args, **kwargs)

    return wrapper


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) RNGs; ask cuDNN for deterministic kernels.

    Process-wide: call it only inside :func:`host_state_kept` (see the module docstring).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def check_output(out: Path, resume: bool, overwrite: bool, suffix: str = ".safetensors") -> Path:
    """Validate a training output path before any work starts.

    Without ``resume``: refuse an existing OUT or an interrupted run's checkpoint unless
    ``overwrite`` (which removes that checkpoint). With ``resume`` the checkpoint must exist.
    """
    out = Path(out)
    if not out.name.endswith(suffix):
        raise PetiteError(f"{out}: output file name must end with {suffix}")
    folder = checkpoint_folder(out)
    if resume:
        if not (folder / "state.json").exists():
            raise PetiteError(f"{folder}: no checkpoint to resume from (run without --resume)")
        return out
    if not overwrite:
        if out.exists():
            raise PetiteError(f"{out}: already exists (use --overwrite to replace it, --resume to continue)")
        if folder.exists():
            raise PetiteError(f"{folder}: an interrupted run's checkpoint exists "
                              "(use --resume to continue it or --overwrite to start afresh)")
    shutil.rmtree(folder, ignore_errors=True)
    return out


@dataclass
class TrainingData:
    """A cohort split into prepared training and validation subjects (network units)."""

    cohort: Cohort
    train: List[PreparedSubject]
    val: List[PreparedSubject]

    def summary(self) -> dict:
        """Metadata: cohort path, scanner, and the subject ids of each part."""
        return {"cohort": str(self.cohort.root), "scanner": self.cohort.scanner_name,
                "train_subjects": [s.subject_id for s in self.train],
                "val_subjects": [s.subject_id for s in self.val]}

    def scanner_description(self) -> dict:
        """The cohort's scanner description plus the voxel grid it was trained on (``matrix``,
        ``spacing`` in mm, from the first training subject), so adapters can be matched by geometry."""
        first = self.train[0]
        return {**self.cohort.scanner, "matrix": [int(n) for n in first.metric_mask.shape],
                "spacing": [round(float(v), 6) for v in first.spacing]}


def load_training_data(cohort_dir, settings: TrainSettings, seed: int,
                       progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> TrainingData:
    """Read a cohort, split it (seeded) into training and validation subjects, and prepare both."""
    cohort = load_cohort(cohort_dir)
    train, val = split_subjects(cohort.subjects, settings.validation_size, seed)
    prepared = prepare_subjects(list(train) + list(val), progress=progress, cancel=cancel)
    return TrainingData(cohort, prepared[:len(train)], prepared[len(train):])


def generator_forward(generator: nn.Module, compile: bool = False):
    """What computes the generator's output in training steps: ``generator`` itself, or with
    ``compile`` its ``torch.compile``-d version (same parameters; compiled on the first step)."""
    if not compile:
        return generator
    if not hasattr(torch, "compile"):
        raise PetiteError("--compile: this torch has no torch.compile (it needs torch >= 2.0)")
    return torch.compile(generator)


def build_objective(generator: nn.Module, discriminator: Optional[nn.Module], train_discriminator: bool,
                    settings: TrainSettings, total_steps: int):
    """The objective of a run: L1 (no discriminator) or L1 x 100 + adversarial (with one)."""
    warmup = int(round(settings.warmup_fraction * total_steps))
    schedule = CosineSchedule(settings.lr, total_steps, warmup)
    optimizer = adamw(generator, settings.lr, settings.weight_decay)
    forward = generator_forward(generator, settings.compile)
    if discriminator is None:
        return L1Objective(generator, optimizer, schedule, forward=forward)
    if not train_discriminator:
        return AdversarialObjective(generator, discriminator, optimizer, schedule, l1_weight=L1_WEIGHT,
                                    forward=forward)
    d_optimizer = adamw(discriminator, DISCRIMINATOR_LR, settings.weight_decay, betas=DISCRIMINATOR_BETAS)
    return AdversarialObjective(generator, discriminator, optimizer, schedule, d_optimizer,
                                CosineSchedule(DISCRIMINATOR_LR, total_steps, warmup), l1_weight=L1_WEIGHT,
                                forward=forward)


def run_training(*, generator: nn.Module, discriminator: Optional[nn.Module], train_discriminator: bool,
                 data: TrainingData, settings: TrainSettings, seed: int, device: torch.device, out: Path,
                 job: dict, write_output: Callable[[int, Dict[str, float]], None], stage: str,
                 resume: bool, progress: Optional[ProgressCallback],
                 cancel: Optional[CancelToken], processes: Optional[Processes] = None) -> FitResult:
    """Train ``generator`` (and ``discriminator`` when ``train_discriminator``) on ``data``.

    ``write_output(epoch, val_metrics)`` is called with the models holding the new best
    weights. ``job`` identifies the run for resuming (settings, seed, spec, base...).
    ``processes``: this process's place in a multi-process run (:mod:`.distributed`); only
    rank 0 writes outputs and checkpoints.
    """
    processes = processes or Processes(0, 1, device)
    dataset = CropDataset(data.train, samples_per_subject=settings.crops_per_subject, seed=seed)
    steps = steps_per_epoch(dataset, settings.batch_size)
    objective = build_objective(generator, discriminator, train_discriminator, settings,
                                settings.epochs * steps)
    batches = functools.partial(epoch_batches, dataset, settings.batch_size, seed)
    validate = whole_volume_validator(generator, data.val, device, settings.overlap, cancel=cancel)
    if processes.distributed:
        objective, batches, validate = distribute(objective, dataset, settings.batch_size, seed, generator,
                                                  data.val, processes, settings.overlap, cancel)

    def set_mode(training: bool) -> None:
        generator.train(training)
        if discriminator is not None:
            discriminator.train(training and train_discriminator)

    plan = FitPlan(
        epochs=settings.epochs, steps_per_epoch=steps,
        batches_for_epoch=batches, validate=validate, on_best=write_output, set_mode=set_mode,
        checkpoint_dir=checkpoint_folder(out), job=job, device=device, stage=stage,
        val_every=settings.val_every, patience=settings.patience, writes_files=processes.is_main)
    return fit(objective, plan, resume=resume, progress=progress, cancel=cancel)


def validation_baseline(data: TrainingData) -> Dict[str, float]:
    """Mean metrics of the validation subjects' short scans against their long scans."""
    return input_metrics(data.val)
