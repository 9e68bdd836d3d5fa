"""PETITE's public functions, shared by the ``petite`` CLI, the Slicer module and the Python console.

Volumes are (x, y, z) float32 numpy arrays with a 4x4 voxel-to-RAS affine in mm. Every long
job takes ``progress`` (a :data:`PETITELib.progress.ProgressCallback`) and ``cancel`` (a
:class:`PETITELib.progress.CancelToken`); errors in the user's input raise
:class:`PETITELib.errors.PetiteError` with a one-line message.

Everything is checked before the work starts (docs/reliability.md): inputs against the accepted
domain (:mod:`PETITELib.input_domain`) and cohorts scan by scan; outputs against the inputs,
their location and other running commands (:func:`PETITELib.output_claim.claim_outputs`).

    from PETITELib import api
    base = api.pretrain("sim/scanner1", backbone="unetr", preset="cpu", out="base.safetensors")
    adapter = api.finetune("sim/scanner4", base=base, peft="petite", out="scanner4.safetensors")
    long_estimate = api.reconstruct(short, affine, base=base, adapter=adapter)
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .engine.inference import DEFAULT_OVERLAP
from .errors import PetiteError
from .progress import CancelToken, ProgressCallback

__all__ = ["reconstruct", "finetune", "pretrain", "evaluate", "simulate"]


def reconstruct(volume: np.ndarray, affine: np.ndarray, *, base=None, adapter=None, device: str = "auto",
                overlap: float = DEFAULT_OVERLAP, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelToken] = None, name: str = "input volume") -> np.ndarray:
    """Long-scan estimate of a short-scan ``volume`` (x, y, z) with voxel-to-RAS ``affine`` (4x4, mm).

    base: base-model file or shipped name (None: the shipped base); adapter: adapter (or fully
    fine-tuned model) file for the volume's scanner, a shipped adapter's name, ``auto`` (the
    shipped adapter matching the volume's grid) or None; an adapter trained on another base is
    refused (see :func:`PETITELib.zoo.choose_models`); device: ``auto``, ``cpu``, ``cuda``
    or ``mps``. Whole-volume sliding-window inference at native resolution (64^3 tiles,
    ``overlap``, Gaussian blending; autocast on CUDA). Returns an array of the input's shape
    in the input's units (Bq/mL, SUV...): the output keeps the input's geometry.

    The volume must lie in the accepted domain (:mod:`PETITELib.input_domain`: real finite
    values, at least 32 voxels and 32 mm per axis, 0.5-4 mm voxels, positive activity, few
    negative voxels) and its affine must be a regular voxel-to-mm map; a result with NaN/Inf
    voxels or outside the sane range of the input is refused. ``name`` says how errors refer
    to the volume (e.g. its file).
    """
    from .engine.devices import select_device
    from .engine.inference import check_overlap, reconstruct_volume
    from .engine.models import load_for_inference
    from .input_domain import check_input, voxel_size
    from .zoo import choose_models

    volume, affine = check_input(volume, affine, name)
    check_overlap(overlap)
    spacing = voxel_size(affine)
    choice = choose_models(base, adapter, shape=volume.shape, spacing=spacing)
    torch_device = select_device(device)
    model = load_for_inference(choice.base, choice.adapter, torch_device)
    return reconstruct_volume(model, volume, spacing, device=torch_device, overlap=overlap,
                              progress=progress, cancel=cancel, name=name)


def _cohort_inputs(cohort, subjects=None) -> Dict[str, Path]:
    """``{what: path}`` of every file of ``subjects`` (default: all) of a cohort and its scanner.json."""
    from .data.cohort import SCANNER_FILE

    inputs = {}
    for subject in subjects if subjects is not None else cohort.subjects:
        for role in ("short", "long", "truth"):
            path = getattr(subject, role)
            if path is not None:
                inputs[f"cohort {subject.subject_id} {role}"] = path
    if (cohort.root / SCANNER_FILE).is_file():
        inputs["cohort scanner.json"] = cohort.root / SCANNER_FILE
    return inputs


def _check_evaluation_subjects(subjects, root) -> None:
    """Refuse, before any inference, a subject whose scans have a problem or whose short scan lies
    outside the accepted domain (the first problem named, the others counted)."""
    from .data.cohort import check_subjects, first_problem
    from .input_domain import geometry_problem
    from .nifti_io import read_grid

    problems = check_subjects(subjects)
    for subject in subjects:
        shape, spacing = read_grid(subject.short)
        problem = geometry_problem(shape, spacing)
        if problem:
            problems.append(f"{subject.short}: {problem}")
    problem = first_problem(problems, root)
    if problem:
        raise PetiteError(problem)


def _named_adapters(base, adapters: Sequence, grid) -> Dict[str, Path]:
    """``{row name: file}`` for ``--adapter`` values (files, shipped names, ``auto``) resolved as
    :func:`reconstruct` resolves them; a shipped adapter's row is named after it, a file after its
    name without suffix."""
    from .nifti_io import read_grid
    from .zoo import choose_models
    from .zoo.manifest import shipped_entry_for

    named: Dict[str, Path] = {}
    shape, spacing = read_grid(grid) if adapters else (None, None)
    for value in adapters:
        choice = choose_models(base, value, shape=shape, spacing=spacing)
        if choice.adapter is None:
            raise PetiteError(f"--adapter {value}: chose no adapter ({choice.note or value}); the base alone is "
                              "scored as no-ft already")
        entry = shipped_entry_for(choice.adapter)
        name = entry.name if entry is not None else Path(choice.adapter).name.split(".")[0]
        if name in named or name == "no-ft":
            raise PetiteError(f"{value}: two adapters are named '{name}'; rename one")
        named[name] = Path(choice.adapter)
    return named


def evaluate(cohort_dir, *, base=None, adapters: Sequence = (), subjects: Optional[Sequence[str]] = None,
             device: str = "auto", overlap: float = DEFAULT_OVERLAP,
             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
             labels=None, ref_region=None, out=None, overwrite: bool = False) -> dict:
    """Score the input, the base alone (``no-ft``) and each adapter on a cohort.

    base: a base-model file or shipped name (None: the shipped base); adapters: what
    ``reconstruct`` takes for ``adapter`` (files, shipped names, ``auto`` for the cohort's grid).
    labels: one region label file for every subject instead of each subject's ``labels.nii.gz``;
    ref_region: the SUVR reference region (:mod:`PETITELib.regional`); with labels each method
    also gets the regional figures and a ``regions`` record per subject.
    out: RESULT.json to write (RESULT.md beside it), refused if it exists unless ``overwrite``.

    Returns ``{"cohort", "base", "subjects", "methods": {name: {"file", "spec", "percent",
    "per_subject": {id: metrics}, "mean": {...}, "sd": {...}, "seconds"}}}`` where metrics
    are psnr/ssim/nrmse (head-masked), their ``*_whole`` versions and, where the cohort has
    truth scans, ``*_truth``. Adapter rows are named after the shipped adapter, or after their
    file (without suffix). Every scan, model and output is checked before the first inference.
    """
    from .data.cohort import load_cohort
    from .engine.devices import select_device
    from .engine.evaluation import evaluate_models, select_subjects
    from .engine.inference import check_overlap
    from .engine.models import check_compatible, describe_weights, load_for_inference, resolve_base
    from .engine.reports import write_evaluation
    from .output_claim import claim_outputs, write_all

    check_overlap(overlap)
    torch_device = select_device(device)
    base_path = resolve_base(base)
    cohort = load_cohort(cohort_dir)
    chosen = select_subjects(cohort, subjects)
    named = _named_adapters(base_path, adapters, chosen[0].short)
    out = Path(out) if out else None
    files = {"--out": out, "--out (markdown)": out.with_suffix(".md")} if out else {}
    inputs = {"--base": base_path, **{f"--adapter {n}": p for n, p in named.items()}, **_cohort_inputs(cohort, chosen)}
    with claim_outputs(files, inputs=inputs):
        for path in files.values():
            if path.exists() and not overwrite:
                raise PetiteError(f"{path}: already exists (use --overwrite to replace it)")
        _check_evaluation_subjects(chosen, cohort.root)
        described = {"no-ft": describe_weights(base_path)}
        loaders = {"no-ft": lambda: load_for_inference(base_path, None, torch_device)}
        for name, adapter in named.items():
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
        result = {"cohort": str(cohort.root), "base": str(base_path), "device": str(torch_device),
                  "subjects": [s.subject_id for s in chosen], "methods": methods}
        if out:
            write_all(lambda: write_evaluation(result, out, overwrite=overwrite), list(files.values()))
    return result


def _training_claim(cohort, out, inputs: dict):
    """The claim of a training run: OUT (probed, locked) and its checkpoint folder (locked, replaced
    with ``--overwrite``), distinct from every input. Under torchrun rank 0 claims for every process."""
    import contextlib

    from .engine.checkpoint import checkpoint_folder
    from .engine.distributed import is_other_rank
    from .output_claim import claim_outputs

    if is_other_rank():
        return contextlib.nullcontext()
    out = Path(out)
    return claim_outputs({"--out": out}, inputs={**inputs, **_cohort_inputs(cohort)},
                         replaced_folders={"--out checkpoint folder": checkpoint_folder(out)})


def finetune(cohort_dir, *, base=None, out, resume: bool = False, overwrite: bool = False,
             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None, **options) -> Path:
    """Fine-tune ``base`` on a target-scanner cohort and write the adapter ``out`` (see
    :func:`PETITELib.engine.finetuning.finetune` for ``peft``, ``epochs``, ``lr``, ``seed``,
    ``device`` and the training overrides). Before any work: every scan of the cohort is checked
    (``petite check-cohort``'s rules), ``out`` may be neither the base nor a cohort file, its
    location is tried and it is locked against a second run. Returns the path written."""
    from .data.cohort import require_valid_cohort
    from .engine.finetuning import finetune as run_finetune
    from .engine.models import resolve_base

    base_path = resolve_base(base)
    cohort = require_valid_cohort(cohort_dir, cancel=cancel)
    with _training_claim(cohort, out, {"--base": base_path}):
        return run_finetune(cohort_dir, base=base_path, out=out, resume=resume, overwrite=overwrite,
                            progress=progress, cancel=cancel, **options)


def pretrain(cohort_dir, *, out, resume: bool = False, overwrite: bool = False,
             progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None, **options) -> Path:
    """Train a base model on a source-scanner cohort and write it to ``out`` (see
    :func:`PETITELib.engine.pretraining.pretrain` for ``backbone``, ``preset``, ``seed``,
    ``device`` and the training overrides), with the checks of :func:`finetune`."""
    from .data.cohort import require_valid_cohort
    from .engine.pretraining import pretrain as run_pretrain

    cohort = require_valid_cohort(cohort_dir, cancel=cancel)
    with _training_claim(cohort, out, {}):
        return run_pretrain(cohort_dir, out=out, resume=resume, overwrite=overwrite, progress=progress,
                            cancel=cancel, **options)


def simulate(out_dir, scanners: Sequence = (1, 2, 3, 4, 5), **options) -> List[Path]:
    """Simulate a cohort under ``out_dir`` (see :func:`PETITELib.data.simulator.simulate_cohort`
    for ``subjects``, ``seed``, ``mode``, ``jobs``, ``overwrite``, ``resume``, ``progress``, ``cancel``).
    Before any work: ``out_dir`` is tried and locked, and a scanner folder that is a link is
    refused (``overwrite`` replaces scanner folders and will not follow a link out of ``out_dir``)."""
    from .data.scanners import Scanner, get_scanner
    from .data.simulator import simulate_cohort
    from .output_claim import claim_outputs

    out_dir = Path(out_dir)
    for scanner in scanners:
        folder = out_dir / (scanner if isinstance(scanner, Scanner) else get_scanner(scanner)).name
        if folder.is_symlink():
            raise PetiteError(f"{folder}: is a link (to {Path(folder).resolve()}); petite simulate writes real "
                              "scanner folders and does not replace links: remove the link or choose another --out")
    with claim_outputs(folders={"--out": out_dir}):
        return simulate_cohort(out_dir, scanners=scanners, **options)
