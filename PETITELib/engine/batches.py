"""Training batches and whole-volume validation built on the data pipeline (:mod:`PETITELib.data.pipeline`)."""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch

from ..data.pipeline import CropDataset, PreparedSubject, restore_output
from ..metrics import compare_volumes
from ..progress import CancelToken, check_cancel
from .inference import sliding_window_predict


def steps_per_epoch(dataset: CropDataset, batch_size: int) -> int:
    """Optimizer steps in one epoch (the last, smaller batch is kept)."""
    return -(-len(dataset) // batch_size)


def epoch_batch_indices(dataset: CropDataset, batch_size: int, seed: int, epoch: int) -> Iterator[List[int]]:
    """The sample indices of each batch of ``epoch`` (selects the epoch's crops in ``dataset``).

    Crops and their order depend only on (seed, epoch), not on any global RNG, so an
    interrupted run resumed at ``epoch`` sees exactly the batches it would have seen.
    """
    dataset.set_epoch(epoch)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    for first in range(0, len(order), batch_size):
        yield [int(i) for i in order[first:first + batch_size]]


def collate(dataset: CropDataset, indices: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(short, long) crops ``indices`` of ``dataset`` stacked: (len(indices), 1, 64, 64, 64) float32 CPU."""
    samples = [dataset[i] for i in indices]
    return torch.stack([s["short"] for s in samples]), torch.stack([s["long"] for s in samples])


def epoch_batches(dataset: CropDataset, batch_size: int, seed: int, epoch: int
                  ) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
    """The (short, long) batches of ``epoch``: (B, 1, 64, 64, 64) float32 CPU tensors (see
    :func:`epoch_batch_indices`)."""
    for indices in epoch_batch_indices(dataset, batch_size, seed, epoch):
        yield collate(dataset, indices)


def whole_volume_validator(predict: Callable[[torch.Tensor], torch.Tensor],
                           subjects: Sequence[PreparedSubject], device: torch.device, overlap: float,
                           batch_size: int = 2, cancel: CancelToken = None) -> Callable[[], Dict[str, float]]:
    """A ``validate()`` returning mean metrics over ``subjects`` of whole-volume predictions.

    Each validation subject is reconstructed by sliding window at native resolution and scored
    against its long scan in input units with :func:`PETITELib.metrics.compare_volumes`
    (head-masked ``psnr``/``ssim``/``nrmse`` and ``*_whole``) — never on crops.
    """
    def validate() -> Dict[str, float]:
        return mean_metrics(subject_metrics(predict, subjects, device, overlap, batch_size, cancel))
    return validate


def subject_metrics(predict: Callable[[torch.Tensor], torch.Tensor], subjects: Sequence[PreparedSubject],
                    device: torch.device, overlap: float, batch_size: int = 2,
                    cancel: CancelToken = None) -> List[Dict[str, float]]:
    """Metrics of each subject's whole-volume prediction, in order (see :func:`whole_volume_validator`)."""
    per_subject: List[Dict[str, float]] = []
    for subject in subjects:
        check_cancel(cancel)
        prediction = sliding_window_predict(predict, subject.short[0], device=device, overlap=overlap,
                                            batch_size=batch_size, cancel=cancel)
        per_subject.append(compare_volumes(restore_output(prediction, subject.factor, subject.padding),
                                           restore_output(subject.long, subject.factor, subject.padding),
                                           mask=subject.metric_mask, name=subject.subject_id))
    return per_subject


def mean_metrics(per_subject: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """The mean of each metric over subjects (``per_subject`` from :func:`subject_metrics`)."""
    return {key: float(np.mean([m[key] for m in per_subject])) for key in per_subject[0]}


def input_metrics(subjects: Sequence[PreparedSubject]) -> Dict[str, float]:
    """Mean metrics of the short scans themselves against the long scans (the bar to clear)."""
    per_subject = [compare_volumes(restore_output(s.short, s.factor, s.padding),
                                   restore_output(s.long, s.factor, s.padding),
                                   mask=s.metric_mask, name=s.subject_id) for s in subjects]
    return {key: float(np.mean([m[key] for m in per_subject])) for key in per_subject[0]}
