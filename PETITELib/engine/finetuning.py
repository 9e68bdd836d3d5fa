"""``petite finetune``: parameter-efficient (or full) fine-tuning of a base model on a new scanner."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..data.cohort import SPLIT_STAGE, describe_split
from ..progress import CancelToken, ProgressCallback, report
from .devices import describe_device, training_precision
from .distributed import training_processes
from .jobs import (check_output, keeps_host_state, load_training_data, run_training, seed_everything,
                   validation_baseline)
from .models import load_base, resolve_base
from .settings import finetune_defaults
from .training import load_model_state



def prepare_for_finetuning(generator, discriminator, peft):
    """Apply PEFT spec ``peft`` to ``generator`` (only its tensors train; frozen layers keep
    only what the backward pass needs) and freeze ``discriminator`` (or None), which only
    passes the adversarial gradient, with memory-lean layers too. Returns the parsed spec."""
    from ..peft import apply_peft, make_frozen_layers_lean

    spec = apply_peft(generator, peft)
    if discriminator is not None:
        discriminator.requires_grad_(False)
        make_frozen_layers_lean(discriminator)
    return spec


@keeps_host_state
def finetune(cohort_dir, *, base=None, peft: str = "petite", out, epochs: Optional[int] = None,
             lr: Optional[float] = None, seed: int = 0, device: str = "auto",
             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
             resume: bool = False, overwrite: bool = False, **overrides) -> Path:
    """Fine-tune ``base`` (a file or shipped name; None: the shipped base) on a target-scanner
    cohort with PEFT spec ``peft``; write ``out``.

    Only the spec's parameters learn (``full``: all of them); a CvT-GAN base's discriminator
    stays frozen and only supplies the adversarial gradient. Learning rate and weight decay
    default to the paper's supplementary Table 3 for the method; ``epochs``, ``lr`` and
    ``overrides`` (any :class:`TrainSettings` field) replace defaults. The file written is an
    adapter (a full model for ``full``) whose metadata records the spec, epochs, best epoch,
    validation metrics, wall time, peak memory and device. Returns its path. Under ``torchrun``
    the processes train together (see :mod:`.distributed`) and rank 0 writes ``out``.
    """
    from ..peft import count_parameters, save_adapter, save_base_model

    processes = training_processes(device)
    torch_device = processes.device
    progress = progress if processes.is_main else None  # one progress report per run
    seed_everything(seed)  # PEFT layers are initialised randomly (e.g. LoRA's down-projection)
    base_path = resolve_base(base)
    loaded = load_base(base_path, torch_device)
    generator, discriminator = loaded.model, loaded.discriminator
    spec = prepare_for_finetuning(generator, discriminator, peft)
    settings = finetune_defaults(generator.backbone_name, generator.preset, spec).with_overrides(
        epochs=epochs, lr=lr, **overrides)
    out = check_output(out, resume, overwrite)
    generator.gradient_checkpointing = settings.checkpointing
    count = count_parameters(generator)
    data = load_training_data(cohort_dir, settings, seed, progress, cancel)
    report(progress, SPLIT_STAGE, len(data.train), len(data.train) + len(data.val),
           describe_split(data.cohort.root, len(data.train), len(data.val)))
    baseline = validation_baseline(data)
    job = {"command": "finetune", "base": str(base_path), "base_sha256": loaded.sha256,
           "spec": spec.canonical, "seed": seed, "settings": settings.as_dict(), **data.summary()}

    def training_summary(extra: dict) -> dict:
        return {**job, "device": describe_device(torch_device), "precision": training_precision(torch_device),
                "trainable_parameters": count.trainable,
                "total_parameters": count.total, "percent": count.percent, "processes": processes.world_size,
                "val_input_metrics": baseline, **extra}

    def save(summary: dict) -> None:
        if spec.full:
            save_base_model(out, generator, discriminator, overwrite=True,
                            training={**summary, "finetuned_from": loaded.sha256})
        else:
            save_adapter(out, generator, scanner=data.scanner_description(), training=summary, overwrite=True)

    def write_output(epoch, metrics):
        save(training_summary({"best_epoch": epoch, "val_metrics": metrics, "complete": False}))

    result = run_training(generator=generator, discriminator=discriminator, train_discriminator=False,
                          data=data, settings=settings, seed=seed, device=torch_device, out=out, job=job,
                          write_output=write_output, stage="finetune", resume=resume, progress=progress,
                          cancel=cancel, processes=processes)
    load_model_state(generator, result.best_state, str(out))
    if processes.is_main:
        save(training_summary({**result.summary(), "complete": True}))
    return out
