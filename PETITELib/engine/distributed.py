"""Multi-process training: ``petite pretrain`` and ``petite finetune`` under ``torchrun``.

Launched as ``torchrun --nproc-per-node N -m PETITELib.cli finetune ...`` every process runs the
same job with :class:`torch.nn.parallel.DistributedDataParallel`:

- one process group per run, set up from torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``): gloo on the CPU, nccl on CUDA (process r on
  ``cuda:LOCAL_RANK``);
- each global batch (the same ``batch_size`` crops, in the same order, as a single process draws)
  is split across the processes: process r reads and trains only crops r, r + N, r + 2N, ... of it;
- gradients are averaged over crops, not over processes (a DDP communication hook weights each
  process's mean gradient by its share of the batch, so an uneven last batch counts right), and the
  reported losses likewise: with the same global batch a run follows a single process's run up to
  floating-point summation order (exactly so for models without batch statistics, e.g. UNETR; a
  CvT-GAN's BatchNorm layers normalise each process's part of the batch on its own);
- validation subjects are shared out and their metrics gathered in subject order, so every process
  sees the same validation metrics and takes the same decisions (best epoch, early stopping);
- only rank 0 writes checkpoints and outputs and reports progress; every process reads the
  checkpoint to resume, and a checkpoint resumes with any number of processes (the global batch,
  not the process count, is part of the job).

Without torchrun's environment (``WORLD_SIZE`` unset or 1) a job runs as one ordinary process.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Sequence, Tuple

import torch

from ..data.pipeline import CropDataset, PreparedSubject
from ..errors import PetiteError
from ..progress import CancelToken
from .batches import collate, epoch_batch_indices, mean_metrics, subject_metrics
from .devices import select_device


@dataclass(frozen=True)
class Processes:
    """Where this process stands in a run: ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True for the process that writes files and reports progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


def is_other_rank() -> bool:
    """True in a torchrun process other than rank 0 (from torchrun's ``WORLD_SIZE`` and ``RANK``,
    before any process group exists): rank 0 alone claims, locks and writes the run's files."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0


def training_processes(device: str = "auto") -> Processes:
    """This process's place in the run, joining torchrun's process group when ``WORLD_SIZE`` > 1.

    ``device`` as for :func:`~PETITELib.engine.devices.select_device`; under torchrun a CUDA
    device becomes ``cuda:LOCAL_RANK``. Raises PetiteError for a device that cannot train with
    several processes (MPS) or a LOCAL_RANK without a GPU.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    torch_device = select_device(device)
    if world_size <= 1:
        return Processes(0, 1, torch_device)
    import torch.distributed as dist

    if not dist.is_available():
        raise PetiteError("torchrun: this torch build has no torch.distributed (train with one process)")
    if torch_device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise PetiteError(f"torchrun: process {local_rank} has no GPU ({torch.cuda.device_count()} present); "
                              "use --nproc-per-node up to the number of GPUs")
        torch_device = torch.device("cuda", local_rank)
        torch.cuda.set_device(torch_device)
        backend = "nccl"
    elif torch_device.type == "cpu":
        backend = "gloo"
    else:
        raise PetiteError(f"--device {device}: several processes train on the CPU (gloo) or on CUDA GPUs (nccl)")
    if not dist.is_initialized():
        dist.init_process_group(backend)
        atexit.register(_leave_process_group)
    return Processes(dist.get_rank(), dist.get_world_size(), torch_device)


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


class _BatchShare:
    """This process's share of the current global batch (its crops / the batch's crops)."""

    weight: float = 1.0


def _weighted_sum_hook(share: _BatchShare, bucket):
    """DDP communication hook: the gradient averaged over the global batch's crops (each process's
    mean gradient times its share of the batch, summed over processes)."""
    import torch.distributed as dist

    tensor = bucket.buffer()
    tensor.mul_(share.weight)
    return dist.all_reduce(tensor, async_op=True).get_future().then(lambda future: future.value()[0])


class DistributedObjective:
    """An objective (see :mod:`.objectives`) whose learning models run under DistributedDataParallel.

    ``models``, ``optimizers`` and ``schedules`` stay the objective's own (unwrapped modules, so
    checkpoints and outputs keep the models' parameter names); the objective's forward passes go
    through the DDP wrappers. :meth:`step` returns losses averaged over the global batch.
    """

    def __init__(self, objective, processes: Processes, share: _BatchShare):
        from torch.nn.parallel import DistributedDataParallel

        self.objective, self.processes, self.share = objective, processes, share
        self.models, self.optimizers, self.schedules = objective.models, objective.optimizers, objective.schedules
        device_ids = [processes.device.index] if processes.device.type == "cuda" else None
        for name in objective.optimizers:  # the models that learn; a frozen discriminator is left alone
            module = objective.models[name]
            if getattr(objective, name) is not module:
                raise PetiteError(f"internal: objective.{name} is not the model it trains")
            wrapped = DistributedDataParallel(module, device_ids=device_ids)
            wrapped.register_comm_hook(share, _weighted_sum_hook)
            setattr(objective, name, wrapped)
            _route_forward_through(objective, module, wrapped)

    def step(self, short: torch.Tensor, long: torch.Tensor) -> Dict[str, float]:
        """One optimisation step on this process's part of the batch; losses of the whole batch."""
        import torch.distributed as dist

        metrics = self.objective.step(short, long)
        names = sorted(metrics)
        values = torch.tensor([metrics[k] * self.share.weight for k in names], dtype=torch.float64,
                              device=self.processes.device)
        dist.all_reduce(values)
        return dict(zip(names, values.tolist()))


def _route_forward_through(objective, module, wrapped) -> None:
    """Make the objective's ``forward`` (the generator, or its ``torch.compile``-d version) run
    through the DDP wrapper: a forward that bypasses it exchanges no gradients."""
    forward = getattr(objective, "forward", None)
    if forward is module:
        objective.forward = wrapped
    elif getattr(forward, "_orig_mod", None) is module:  # torch.compile's wrapper of the module
        objective.forward = torch.compile(wrapped)


def sharded_batches(dataset: CropDataset, batch_size: int, seed: int, processes: Processes,
                    share: _BatchShare) -> Callable[[int], Iterator[Tuple[torch.Tensor, torch.Tensor]]]:
    """``batches_for_epoch(epoch)`` yielding this process's crops of each global batch.

    Sets ``share.weight`` before each yield. A process left without crops (a last batch smaller
    than the number of processes) trains on one crop with weight 0, so that every process joins
    every gradient exchange.
    """
    def batches_for_epoch(epoch: int):
        for indices in epoch_batch_indices(dataset, batch_size, seed, epoch):
            mine = indices[processes.rank::processes.world_size]
            share.weight = len(mine) / len(indices)
            yield collate(dataset, mine or indices[:1])
    return batches_for_epoch


def sharded_validator(predict: Callable[[torch.Tensor], torch.Tensor], subjects: Sequence[PreparedSubject],
                      processes: Processes, overlap: float, cancel: CancelToken = None
                      ) -> Callable[[], Dict[str, float]]:
    """A ``validate()`` where process r scores subjects r, r + N, ... and every process returns the
    mean over all subjects (in subject order, as one process computes it)."""
    import torch.distributed as dist

    def validate() -> Dict[str, float]:
        mine = subject_metrics(predict, list(subjects)[processes.rank::processes.world_size], processes.device,
                               overlap, cancel=cancel)
        gathered = [None] * processes.world_size
        dist.all_gather_object(gathered, mine)
        ordered = [gathered[i % processes.world_size][i // processes.world_size] for i in range(len(subjects))]
        return mean_metrics(ordered)
    return validate


def distribute(objective, dataset: CropDataset, batch_size: int, seed: int, predict, val_subjects,
               processes: Processes, overlap: float, cancel: CancelToken = None):
    """(objective, batches_for_epoch, validate) of a run shared by ``processes`` (see the module docstring)."""
    share = _BatchShare()
    return (DistributedObjective(objective, processes, share),
            sharded_batches(dataset, batch_size, seed, processes, share),
            sharded_validator(predict, val_subjects, processes, overlap, cancel))
