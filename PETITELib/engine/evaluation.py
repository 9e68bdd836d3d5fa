"""Scoring models on a cohort: every subject's short scan reconstructed and compared with its long scan.

Rows: ``input`` (the short scan itself: the bar every model must clear), then each named
model (``no-ft`` = the base alone, then one per adapter). Metrics come from
:func:`PETITELib.metrics.compare_volumes` against the long scan (head-masked default and
``*_whole``) and, for subjects with a simulated ``truth`` scan, ``psnr_truth``/``ssim_truth``/
``nrmse_truth`` against the truth (head-masked with the truth's own mask).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from ..data.cohort import Cohort, Subject
from ..errors import PetiteError
from ..metrics import compare_volumes, metric_mask
from ..nifti_io import load_volume
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from .inference import DEFAULT_OVERLAP, reconstruct_volume
from .tables import mean_sd

Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Reference:
    """What a subject's predictions are scored against: long scan (and truth) with their masks."""

    spacing: tuple
    long: np.ndarray
    long_mask: np.ndarray
    truth: Optional[np.ndarray] = None
    truth_mask: Optional[np.ndarray] = None


def load_reference(subject: Subject) -> Reference:
    """Load the long scan (and truth, if any) of ``subject`` and compute their metric masks."""
    long = load_volume(subject.long)
    spacing = long.spacing
    reference = Reference(spacing, long.array, metric_mask(long.array, spacing))
    if subject.truth is not None:
        truth = load_volume(subject.truth).array
        reference.truth, reference.truth_mask = truth, metric_mask(truth, spacing)
    return reference


def score(prediction: np.ndarray, reference: Reference, name: str = "reference") -> Dict[str, float]:
    """Metrics of one (x, y, z) prediction against the long scan (and ``*_truth`` against truth)."""
    metrics = compare_volumes(prediction, reference.long, mask=reference.long_mask, name=name)
    if reference.truth is not None:
        versus_truth = compare_volumes(prediction, reference.truth, mask=reference.truth_mask, name=name)
        metrics.update({f"{k}_truth": versus_truth[k] for k in ("psnr", "ssim", "nrmse")})
    return metrics


def evaluate_models(subjects: Sequence[Subject], models: Mapping[str, Callable[[], Predictor]], *,
                    device: torch.device, overlap: float = DEFAULT_OVERLAP,
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> Dict[str, dict]:
    """Per-subject and mean/sd metrics of the input and of every model on ``subjects``.

    models: ``{name: load}`` where ``load()`` returns a predictor ((B, 1, 64, 64, 64) ->
    same shape, normalised units); models are loaded one at a time. Returns
    ``{name: {"per_subject": {id: metrics}, "mean": {...}, "sd": {...}, "seconds": s}}``
    with ``input`` first (``seconds`` is the mean inference time per subject).
    """
    if not subjects:
        raise PetiteError("evaluation: no subjects to evaluate")
    references: Dict[str, Reference] = {}
    results: Dict[str, dict] = {}
    total = len(subjects) * (1 + len(models))
    done = 0
    names: List[str] = ["input", *models]
    for name in names:
        predict = None if name == "input" else models[name]()
        per_subject, seconds = {}, 0.0
        for subject in subjects:
            check_cancel(cancel)
            if subject.subject_id not in references:
                references[subject.subject_id] = load_reference(subject)
            reference = references[subject.subject_id]
            short = load_volume(subject.short).array
            tic = time.perf_counter()
            prediction = short if predict is None else reconstruct_volume(
                predict, short, reference.spacing, device=device, overlap=overlap, cancel=cancel,
                name=str(subject.short))
            seconds += time.perf_counter() - tic
            per_subject[subject.subject_id] = score(prediction, reference, name=str(subject.long))
            done += 1
            report(progress, "evaluate", done, total, f"{name}: {subject.subject_id}",
                   psnr=per_subject[subject.subject_id]["psnr"])
        results[name] = {"per_subject": per_subject, **mean_sd(per_subject),
                         "seconds": round(seconds / len(subjects), 3)}
        del predict
    return results


def select_subjects(cohort: Cohort, subject_ids: Optional[Sequence[str]] = None) -> List[Subject]:
    """The cohort's subjects, or those named in ``subject_ids`` (PetiteError for unknown ids)."""
    if not subject_ids:
        return list(cohort.subjects)
    by_id = {s.subject_id: s for s in cohort.subjects}
    unknown = [s for s in subject_ids if s not in by_id]
    if unknown:
        raise PetiteError(f"{cohort.root}: unknown subject(s) {', '.join(unknown)}")
    return [by_id[s] for s in subject_ids]
