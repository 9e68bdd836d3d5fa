"""Scoring models on a cohort: every subject's short scan reconstructed and compared with its long scan.

Rows: ``input`` (the short scan itself: the bar every model must clear), then each named
model (``no-ft`` = the base alone, then one per adapter). Metrics come from
:func:`PETITELib.metrics.compare_volumes` against the long scan (head-masked default and
``*_whole``) and, for subjects with a simulated ``truth`` scan, ``psnr_truth``/``ssim_truth``/
``nrmse_truth`` against the truth (head-masked with the truth's own mask).

Subjects with region labels (the cohort's ``labels.nii.gz``, or one ``labels`` file for all) also
get the regional figures of :data:`PETITELib.regional.SUMMARY_KEYS` (mean |regional bias| %, mean
|SUVR bias| %, grey/white contrast and its ratio to the long scan's), and each method's entry a
``regions`` record: ``{subject: regional report of the method against the long scan}``.
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
from ..regional import Regions, compare, load_regions, summary, units_of
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
    regions: Optional[Regions] = None
    long_region_means: Optional[Dict[int, float]] = None
    units: str = ""


def load_reference(subject: Subject, labels=None, ref_region=None) -> Reference:
    """Load the long scan (and truth, if any) of ``subject`` and compute their metric masks; with
    region labels (``labels``, else the subject's own) also their regions and the long scan's
    region means (``ref_region``: see :func:`PETITELib.regional.resolve_reference_region`)."""
    long = load_volume(subject.long)
    spacing = long.spacing
    reference = Reference(spacing, long.array, metric_mask(long.array, spacing), units=units_of(long))
    if subject.truth is not None:
        truth = load_volume(subject.truth).array
        reference.truth, reference.truth_mask = truth, metric_mask(truth, spacing)
    labels = labels if labels is not None else subject.labels
    if labels is not None:
        reference.regions = load_regions(labels, long, str(subject.long), ref_region)
        reference.long_region_means = reference.regions.means(long.array)
    return reference


def score(prediction: np.ndarray, reference: Reference, name: str = "reference") -> Dict[str, float]:
    """Metrics of one (x, y, z) prediction against the long scan (and ``*_truth`` against truth;
    the regional summary figures when the reference has regions)."""
    metrics = compare_volumes(prediction, reference.long, mask=reference.long_mask, name=name)
    if reference.truth is not None:
        versus_truth = compare_volumes(prediction, reference.truth, mask=reference.truth_mask, name=name)
        metrics.update({f"{k}_truth": versus_truth[k] for k in ("psnr", "ssim", "nrmse")})
    if reference.regions is not None:
        metrics.update(summary(reference.regions.means(prediction), reference.long_region_means,
                               reference.regions))
    return metrics


def regional_record(prediction: np.ndarray, reference: Reference, name: str) -> dict:
    """The regional report of one prediction (image ``name``) against the long scan (JSON-ready)."""
    return compare({name: reference.regions.means(prediction), "long": reference.long_region_means},
                   reference.regions, reference.units)


def evaluate_models(subjects: Sequence[Subject], models: Mapping[str, Callable[[], Predictor]], *,
                    device: torch.device, overlap: float = DEFAULT_OVERLAP,
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None, labels=None, ref_region=None) -> Dict[str, dict]:
    """Per-subject and mean/sd metrics of the input and of every model on ``subjects``.

    models: ``{name: load}`` where ``load()`` returns a predictor ((B, 1, 64, 64, 64) ->
    same shape, normalised units); models are loaded one at a time. Returns
    ``{name: {"per_subject": {id: metrics}, "mean": {...}, "sd": {...}, "seconds": s}}``
    with ``input`` first (``seconds`` is the mean inference time per subject) and, when
    subjects have region labels, ``"regions": {id: regional report}``. labels: one label file
    for every subject instead of each subject's own; ref_region: the SUVR reference region.
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
        per_subject, seconds, regional = {}, 0.0, {}
        for subject in subjects:
            check_cancel(cancel)
            if subject.subject_id not in references:
                references[subject.subject_id] = load_reference(subject, labels, ref_region)
            reference = references[subject.subject_id]
            short = load_volume(subject.short).array
            tic = time.perf_counter()
            prediction = short if predict is None else reconstruct_volume(
                predict, short, reference.spacing, device=device, overlap=overlap, cancel=cancel,
                name=str(subject.short), check_range=False)
            seconds += time.perf_counter() - tic
            per_subject[subject.subject_id] = score(prediction, reference, name=str(subject.long))
            if reference.regions is not None:
                regional[subject.subject_id] = regional_record(prediction, reference, name)
            done += 1
            report(progress, "evaluate", done, total, f"{name}: {subject.subject_id}",
                   psnr=per_subject[subject.subject_id]["psnr"])
        results[name] = {"per_subject": per_subject, **mean_sd(per_subject),
                         "seconds": round(seconds / len(subjects), 3)}
        if regional:
            results[name]["regions"] = regional
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
