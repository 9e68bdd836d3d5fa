"""PETITE's public functions, shared by the ``petite`` CLI, the Slicer module and the Python console.

Volumes are (x, y, z) float32 numpy arrays with a 4x4 voxel-to-RAS affine in mm. Every long
job takes ``progress`` (a :data:`PETITELib.progress.ProgressCallback`) and ``cancel`` (a
:class:`PETITELib.progress.CancelToken`); errors in the user's input raise
:class:`PETITELib.errors.PetiteError` with a one-line message.

    from PETITELib import api
    base = api.pretrain("sim/scanner1", backbone="unetr", preset="cpu", out="base.safetensors")
    adapter = api.finetune("sim/scanner4", base=base, peft="petite", out="scanner4.safetensors")
    long_estimate = api.reconstruct(short, affine, base=base, adapter=adapter)
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .data.simulator import simulate_cohort as simulate
from .engine.finetuning import finetune
from .engine.inference import DEFAULT_OVERLAP
from .engine.pretraining import pretrain
from .errors import PetiteError
from .progress import CancelToken, ProgressCallback

__all__ = ["reconstruct", "finetune", "pretrain", "evaluate", "simulate"]


def reconstruct(volume: np.ndarray, affine: np.ndarray, *, base=None, adapter=None, device: str = "auto",
                overlap: float = DEFAULT_OVERLAP, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelToken] = None) -> np.ndarray:
    """Long-scan estimate of a short-scan ``volume`` (x, y, z) with voxel-to-RAS ``affine`` (4x4, mm).

    base: base-model file or shipped name (None: the shipped base); adapter: adapter (or fully
    fine-tuned model) file for the volume's scanner, a shipped adapter's name, ``auto`` (the
    shipped adapter matching the volume's grid) or None; an adapter trained on another base is
    refused (see :func:`PETITELib.zoo.choose_models`); device: ``auto``, ``cpu``, ``cuda``
    or ``mps``. Whole-volume sliding-window inference at native resolution (64^3 tiles,
    ``overlap``, Gaussian blending; autocast on CUDA). Returns an array of the input's shape
    in the input's units (Bq/mL, SUV...): the output keeps the input's geometry.
    """
    from .engine.devices import select_device
    from .engine.inference import check_overlap, reconstruct_volume
    from .engine.models import load_for_inference
    from .zoo import choose_models

    volume = np.asarray(volume, dtype=np.float32)
    affine = np.asarray(affine, dtype=np.float64)
    if volume.ndim != 3:
        raise PetiteError(f"input volume: expected 3 dimensions (x, y, z), got shape {volume.shape}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise PetiteError(f"input affine: expected a finite 4x4 matrix, got shape {affine.shape}")
    if not np.isfinite(volume).all():
        raise PetiteError("input volume: contains NaN or Inf values")
    check_overlap(overlap)
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    choice = choose_models(base, adapter, shape=volume.shape, spacing=spacing)
    torch_device = select_device(device)
    model = load_for_inference(choice.base, choice.adapter, torch_device)
    return reconstruct_volume(model, volume, spacing, device=torch_device, overlap=overlap,
                              progress=progress, cancel=cancel)


def evaluate(cohort_dir, *, base=None, adapters: Sequence = (), subjects: Optional[Sequence[str]] = None,
             device: str = "auto", overlap: float = DEFAULT_OVERLAP,
             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
             labels=None, ref_region=None) -> dict:
    """Score the input, the base alone (``no-ft``) and each adapter on a cohort.

    base: a base-model file or shipped name (None: the shipped base); adapters: adapter files.
    labels: one region label file for every subject instead of each subject's ``labels.nii.gz``;
    ref_region: the SUVR reference region (:mod:`PETITELib.regional`); with labels each method
    also gets the regional figures and a ``regions`` record per subject.

    Returns ``{"cohort", "base", "subjects", "methods": {name: {"file", "spec", "percent",
    "per_subject": {id: metrics}, "mean": {...}, "sd": {...}, "seconds"}}}`` where metrics
    are psnr/ssim/nrmse (head-masked), their ``*_whole`` versions and, where the cohort has
    truth scans, ``*_truth``. Adapter rows are named after their file (without suffix).
    """
    from .data.cohort import load_cohort
    from .engine.devices import select_device
    from .engine.evaluation import evaluate_models, select_subjects
    from .engine.inference import check_overlap
    from .engine.models import check_compatible, describe_weights, load_for_inference, resolve_base

    check_overlap(overlap)
    torch_device = select_device(device)
    base_path = resolve_base(base)
    cohort = load_cohort(cohort_dir)
    chosen = select_subjects(cohort, subjects)
    described = {"no-ft": describe_weights(base_path)}
    loaders = {"no-ft": lambda: load_for_inference(base_path, None, torch_device)}
    for adapter in adapters:
        name = Path(adapter).name.split(".")[0]
        if name in described:
            raise PetiteError(f"{adapter}: two adapters are named '{name}'; rename one")
        check_compatible(base_path, adapter)  # refuse an adapter of another base before any work
        described[name] = describe_weights(adapter)
        loaders[name] = (lambda a=adapter: load_for_inference(base_path, a, torch_device))
    scored = evaluate_models(chosen, loaders, device=torch_device, overlap=overlap, progress=progress,
                             cancel=cancel, labels=labels, ref_region=ref_region)
    methods = {}
    for name, entry in scored.items():
        info = described.get(name, {})
        training = info.get("training", {})
        methods[name] = {"file": info.get("file"), "spec": info.get("spec", ""),
                         "percent": training.get("percent"), **entry}
    return {"cohort": str(cohort.root), "base": str(base_path), "device": str(torch_device),
            "subjects": [s.subject_id for s in chosen], "methods": methods}

