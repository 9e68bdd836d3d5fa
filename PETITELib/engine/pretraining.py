"""``petite pretrain``: full training of a base model on a source-scanner cohort."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..errors import PetiteError
from ..data.cohort import SPLIT_STAGE, describe_split
from ..progress import CancelToken, ProgressCallback, report
from .devices import describe_device
from .distributed import training_processes
from .initialization import start_from_identity
from .jobs import (check_output, keeps_host_state, load_training_data, run_training, seed_everything,
                   validation_baseline)
from .settings import pretrain_defaults
from .training import load_model_state


@keeps_host_state
def pretrain(cohort_dir, *, backbone: str, preset: str = "cpu", out, seed: int = 0, device: str = "auto",
             resume: bool = False, overwrite: bool = False, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None, **overrides) -> Path:
    """Train ``backbone`` at size ``preset`` on every weight and write the best epoch to ``out``.

    The network starts as the identity (see :mod:`.initialization`). UNETR learns with an L1 loss; CvT-GAN with 100 x L1 + a patch-GAN loss, its discriminator
    learning alongside and saved in the same file. The best epoch is chosen by head-masked
    PSNR of whole validation volumes. ``overrides``: any :class:`TrainSettings` field
    (epochs, lr, weight_decay, batch_size, crops_per_subject, val_subjects, val_every,
    overlap, warmup_fraction). Returns the path of the base-model file. Under ``torchrun`` the
    processes train together (see :mod:`.distributed`) and rank 0 writes ``out``.
    """
    from ..backbones import BACKBONES, PRESETS, build_backbone, build_discriminator
    from ..peft import save_base_model

    if backbone not in BACKBONES or preset not in PRESETS:
        raise PetiteError(f"--backbone {backbone} --preset {preset}: choose a backbone from "
                          f"{', '.join(BACKBONES)} and a preset from {', '.join(PRESETS)}")
    settings = pretrain_defaults(backbone, preset).with_overrides(**overrides)
    processes = training_processes(device)
    torch_device = processes.device
    progress = progress if processes.is_main else None  # one progress report per run
    out = check_output(out, resume, overwrite)
    seed_everything(seed)
    generator = build_backbone(backbone, preset,
                               gradient_checkpointing=settings.checkpointing).to(torch_device)
    start_from_identity(generator)
    discriminator = None
    if BACKBONES[backbone].build_discriminator is not None:
        discriminator = build_discriminator(backbone, preset).to(torch_device)
    data = load_training_data(cohort_dir, settings, seed, progress, cancel)
    report(progress, SPLIT_STAGE, len(data.train), len(data.train) + len(data.val),
           describe_split(data.cohort.root, len(data.train), len(data.val)))
    baseline = validation_baseline(data)
    job = {"command": "pretrain", "backbone": backbone, "preset": preset, "seed": seed, "init": "identity",
           "settings": settings.as_dict(), **data.summary()}

    def training_summary(extra: dict) -> dict:
        return {**job, "device": describe_device(torch_device), "processes": processes.world_size,
                "val_input_metrics": baseline, **extra}

    def write_output(epoch, metrics):
        save_base_model(out, generator, discriminator, overwrite=True,
                        training=training_summary({"best_epoch": epoch, "val_metrics": metrics,
                                                   "complete": False}))

    result = run_training(generator=generator, discriminator=discriminator, train_discriminator=True,
                          data=data, settings=settings, seed=seed, device=torch_device, out=out, job=job,
                          write_output=write_output, stage="pretrain", resume=resume, progress=progress,
                          cancel=cancel, processes=processes)
    load_model_state(generator, result.best_state, str(out))
    if processes.is_main:
        save_base_model(out, generator, discriminator, overwrite=True,
                        training=training_summary({**result.summary(), "complete": True}))
    return out
