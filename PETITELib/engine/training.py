"""The epoch loop shared by pre-training and fine-tuning: steps, validation, best model, resume.

``fit`` runs whole epochs of an objective (see :mod:`.objectives`), validates on whole
volumes after every ``val_every`` epochs, hands each new best model to ``on_best`` (which
writes the output file, so a cancelled or crashed job keeps the best result so far) and
writes a checkpoint after every epoch (see :mod:`.checkpoint`). With ``resume`` it restores
the last checkpoint — model tensors, optimizer moments, schedules, RNG states, history and
best model — and continues with the next epoch, so at most one epoch of work is lost.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from ..errors import PetiteError
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from . import checkpoint as ckpt
from .memory import PeakMemory

Batch = Tuple[torch.Tensor, torch.Tensor]


@dataclass
class FitResult:
    """What a training run did: epochs, best epoch and its validation metrics, time and memory.

    seconds: wall time of the run (training + validation, summed over resumed parts; it includes
    any time the process was stopped or shared the cores); train_seconds: time spent in
    optimisation steps only; step_seconds: mean time per step; cpu_seconds: CPU time of the
    training process (all its threads, summed over resumed parts; None when a resumed part came
    from a checkpoint that did not record it): unlike wall time, a pause or a busy machine does
    not inflate it.
    """

    epochs: int
    best_epoch: int
    best_metrics: Dict[str, float]
    history: List[dict]
    seconds: float
    train_seconds: float
    step_seconds: float
    memory: Dict[str, object]
    cpu_seconds: Optional[float] = None
    resumed_from_epoch: int = 0
    best_state: Dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> dict:
        """JSON-serialisable summary for output metadata (no tensors)."""
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "val_metrics": self.best_metrics,
                "history": self.history, "wall_seconds": round(self.seconds, 2),
                "train_seconds": round(self.train_seconds, 2), "step_seconds": round(self.step_seconds, 4),
                "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 2),
                "resumed_from_epoch": self.resumed_from_epoch, **self.memory}


def model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors training changes: trainable parameters and all buffers (e.g. norm statistics)."""
    state = {name: p for name, p in model.named_parameters() if p.requires_grad}
    state.update(dict(model.named_buffers()))
    return state


def load_model_state(model: nn.Module, tensors: Dict[str, torch.Tensor], what: str) -> None:
    """Copy ``tensors`` (from :func:`model_state`) into ``model``; refuse if the names differ."""
    expected = set(model_state(model))
    if set(tensors) != expected:
        missing, extra = sorted(expected - set(tensors))[:3], sorted(set(tensors) - expected)[:3]
        raise PetiteError(f"{what}: tensors do not match this job (missing {missing}, unexpected {extra})")
    params_and_buffers = dict(model.named_parameters())
    params_and_buffers.update(dict(model.named_buffers()))
    with torch.no_grad():
        for name, value in tensors.items():
            params_and_buffers[name].copy_(value)


def _snapshot(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {name: value.detach().to("cpu", copy=True) for name, value in model_state(model).items()}


@dataclass
class FitPlan:
    """Everything :func:`fit` needs besides the objective.

    batches_for_epoch(epoch) -> iterable of (short, long) CPU tensors (B, 1, 64, 64, 64);
    it must be deterministic given the restored RNG state (the loop restores it on resume).
    validate() -> metrics with at least "psnr" (whole-volume, head-masked), computed with
    the models in eval mode. on_best(epoch, metrics) writes the output for the current
    (best) weights. set_mode(training) switches train/eval mode appropriately (e.g. frozen
    norms stay in eval mode). job: the configuration a checkpoint must match to be resumed.
    writes_files: False in the processes of a multi-process run other than rank 0, which
    neither write outputs (``on_best``) nor checkpoints.
    """

    epochs: int
    steps_per_epoch: int
    batches_for_epoch: Callable[[int], Iterable[Batch]]
    validate: Callable[[], Dict[str, float]]
    on_best: Callable[[int, Dict[str, float]], None]
    set_mode: Callable[[bool], None]
    checkpoint_dir: Path
    job: dict
    device: torch.device
    stage: str = "train"
    val_every: int = 1
    patience: int = 0
    writes_files: bool = True


def _checkpoint_payload(objective, best_state, history, best_epoch, best_metrics, job, train_seconds,
                        steps, wall_seconds, cpu_seconds):
    tensors = {}
    for name, model in objective.models.items():
        if name in objective.optimizers:  # only models that learn change
            tensors.update(ckpt.prefixed(model_state(model), f"model.{name}"))
    tensors.update(ckpt.prefixed(best_state, "best"))
    optim_json = {}
    for name, optimizer in objective.optimizers.items():
        names = ckpt.names_by_id(objective.models[name].named_parameters())
        opt_tensors, optim_json[name] = ckpt.optimizer_state(optimizer, names, prefix=f"optim.{name}")
        tensors.update(opt_tensors)
    rng_tensors, rng_json = ckpt.rng_state()
    tensors.update(rng_tensors)
    state = {"job": job, "history": history, "best_epoch": best_epoch, "best_metrics": best_metrics,
             "optimizers": optim_json, "rng": rng_json, "train_seconds": train_seconds, "steps": steps,
             "wall_seconds": wall_seconds, "cpu_seconds": cpu_seconds,
             "schedules": {name: s.state_dict() for name, s in objective.schedules.items()}}
    return tensors, state


def _restore(objective, tensors, state, job, folder):
    job = json.loads(json.dumps(job))  # compare as stored (tuples become lists)
    if state["job"] != job:
        changed = sorted(k for k in set(job) | set(state["job"]) if job.get(k) != state["job"].get(k))
        raise PetiteError(f"{folder}: checkpoint was made with different settings ({', '.join(changed)}); "
                          "start afresh with --overwrite")
    for name in objective.optimizers:
        model = objective.models[name]
        load_model_state(model, ckpt.tensors_with_prefix(tensors, f"model.{name}"), str(folder))
        names = ckpt.names_by_id(model.named_parameters())
        ckpt.restore_optimizer_state(objective.optimizers[name], names, tensors, state["optimizers"][name],
                                     prefix=f"optim.{name}")
        objective.schedules[name].load_state_dict(state["schedules"][name])
    ckpt.restore_rng_state(tensors, state["rng"])
    return ckpt.tensors_with_prefix(tensors, "best")


def validations_since_best(history: List[dict], best_epoch: int) -> int:
    """How many validations came after the best one (``history``: one record per epoch)."""
    return sum(1 for record in history if record["epoch"] > best_epoch and "val_psnr" in record)


def fit(objective, plan: FitPlan, resume: bool = False, progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None) -> FitResult:
    """Train ``objective`` for ``plan.epochs`` epochs (continuing a checkpoint with ``resume``).

    With ``plan.patience`` > 0 training stops early once that many validations in a row did not
    improve on the best validation PSNR (the best epoch's weights are what is kept either way);
    ``FitResult.epochs`` is the number of epochs that ran.

    Raises :class:`~PETITELib.errors.Cancelled` (after the last completed epoch's checkpoint
    and the best output so far are on disk) when ``cancel`` is triggered. On success the
    checkpoint folder is removed and the returned result holds the best weights
    (``best_state``, CPU tensors of :func:`model_state` of the generator).
    """
    meter = PeakMemory(plan.device).start()
    started, cpu_started = time.perf_counter(), time.process_time()
    generator = objective.models["generator"]
    history, best_epoch, best_metrics, best_state = [], 0, {}, {}
    start_epoch, train_seconds, steps, earlier_seconds, earlier_cpu = 0, 0.0, 0, 0.0, 0.0
    if resume:
        loaded = ckpt.load_checkpoint(plan.checkpoint_dir)
        if loaded is None:
            raise PetiteError(f"{plan.checkpoint_dir}: no checkpoint to resume from")
        tensors, state = loaded
        best_state = _restore(objective, tensors, state, plan.job, plan.checkpoint_dir)
        start_epoch, history = state["epoch"], state["history"]
        best_epoch, best_metrics = state["best_epoch"], state["best_metrics"]
        train_seconds, steps = state["train_seconds"], state["steps"]
        earlier_seconds, earlier_cpu = state["wall_seconds"], state.get("cpu_seconds")
    total_steps = plan.epochs * plan.steps_per_epoch
    last_val = best_metrics.get("psnr", float("nan"))
    if plan.patience and validations_since_best(history, best_epoch) >= plan.patience:
        start_epoch = plan.epochs  # a resumed run that had already stopped early

    def cpu_seconds():
        return None if earlier_cpu is None else earlier_cpu + time.process_time() - cpu_started

    for epoch in range(start_epoch + 1, plan.epochs + 1):
        plan.set_mode(True)
        losses: Dict[str, float] = {}
        count = 0
        for short, long in plan.batches_for_epoch(epoch):
            check_cancel(cancel)
            tic = time.perf_counter()
            metrics = objective.step(short.to(plan.device, non_blocking=True),
                                     long.to(plan.device, non_blocking=True))
            train_seconds += time.perf_counter() - tic
            steps += 1
            count += 1
            for key, value in metrics.items():
                losses[key] = losses.get(key, 0.0) + value
            report(progress, plan.stage, (epoch - 1) * plan.steps_per_epoch + count, total_steps,
                   f"epoch {epoch}/{plan.epochs}", loss=metrics["loss"], val_psnr=last_val)
        record = {"epoch": epoch, **{k: round(v / max(1, count), 6) for k, v in losses.items()}}
        if epoch % plan.val_every == 0 or epoch == plan.epochs:
            check_cancel(cancel)
            plan.set_mode(False)
            val = plan.validate()
            last_val = val["psnr"]
            record.update({f"val_{k}": round(v, 5) for k, v in val.items()})
            if not best_metrics or val["psnr"] > best_metrics["psnr"]:
                best_epoch, best_metrics = epoch, val
                best_state = _snapshot(generator)
                if plan.writes_files:
                    plan.on_best(epoch, val)
        history.append(record)
        if plan.writes_files:
            tensors, state = _checkpoint_payload(objective, best_state, history, best_epoch, best_metrics,
                                                 plan.job, train_seconds, steps,
                                                 earlier_seconds + time.perf_counter() - started, cpu_seconds())
            ckpt.save_checkpoint(plan.checkpoint_dir, epoch, tensors, state)
        report(progress, plan.stage, epoch * plan.steps_per_epoch, total_steps,
               f"epoch {epoch}/{plan.epochs}", loss=record.get("loss", float("nan")), val_psnr=last_val)
        if plan.patience and validations_since_best(history, best_epoch) >= plan.patience:
            break  # early stopping: the best epoch is kept
    result = FitResult(epochs=len(history), best_epoch=best_epoch, best_metrics=best_metrics, history=history,
                       seconds=earlier_seconds + time.perf_counter() - started, train_seconds=train_seconds,
                       step_seconds=train_seconds / max(1, steps), cpu_seconds=cpu_seconds(),
                       memory=meter.summary(), resumed_from_epoch=start_epoch, best_state=best_state)
    if plan.writes_files:
        shutil.rmtree(plan.checkpoint_dir, ignore_errors=True)
    return result
