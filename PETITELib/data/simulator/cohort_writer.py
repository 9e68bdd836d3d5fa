"""Writing a simulated cohort to disk: ``petite simulate``'s library function.

Layout under ``out_dir``::

    scanner<k>/scanner.json                  scanner table entry, assumed physics, labels, subjects
    scanner<k>/sub-001/short.nii.gz          first 5-minute frame (Bq/mL)
    scanner<k>/sub-001/long.nii.gz           mean of the six 5-minute frames (Bq/mL)
    scanner<k>/sub-001/truth.nii.gz          the scanner's noise-free image (Bq/mL)
    scanner<k>/sub-001/activity.nii.gz       true activity averaged over each voxel, no blur (Bq/mL)
    scanner<k>/sub-001/labels.nii.gz         region labels (uint8, table in scanner.json)
    montage.png                              short / long / truth of sub-001, one row per scanner

Volumes are written atomically with deterministic bytes, so the same seed gives byte-identical
files whatever ``jobs`` is. ``scanner.json`` is written last: a folder without it is incomplete.
"""
from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ... import __version__
from ...errors import Cancelled, PetiteError
from ...extras import require
from ...nifti_io import atomic_write_bytes, load_volume, save_volume
from ...progress import CancelToken, ProgressCallback, check_cancel, report
from ..scanners import Scanner, get_scanner
from . import (anatomy, attenuation, corrections, detectors, physics, placement, reconstruction,
               surrogate)
from .anatomy import subject_name
from .scan import FINE_FACTOR, check_mode, check_seed, simulate_subject
from .template import LABELS

VOLUMES = ("short", "long", "truth", "activity", "labels")
MONTAGE_NAME = "montage.png"
_SUBJECT_FOLDER = re.compile(r"sub-\d{3,}$")
_POLL_S = 0.5


def _check_count(value, option: str) -> int:
    """``value`` as an int >= 1; PetiteError naming ``option`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise PetiteError(f"{option}: expected a positive integer, got {value!r}")
    return int(value)


def _foreign_entry(folder: Path) -> Optional[Path]:
    """The first path in ``folder`` that this simulator does not write, or None."""
    allowed = {f"{name}.nii.gz" for name in VOLUMES} | {"short", "long"}  # (DICOM series: --format dicom)
    for entry in sorted(folder.iterdir()):
        if entry.name == "scanner.json" or entry.name.endswith(".tmp"):
            continue
        if not (entry.is_dir() and _SUBJECT_FOLDER.match(entry.name)):
            return entry
        for item in sorted(entry.iterdir()):
            if item.name not in allowed and not item.name.endswith(".tmp"):
                return item
    return None


def _prepare(out_dir: Path, folders: Sequence[Path], overwrite: bool) -> None:
    """Refuse existing outputs unless ``overwrite``; then remove old scanner folders to replace them."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PetiteError(f"{out_dir}: exists and is not a folder")
    existing = [f for f in folders if f.exists()]
    blocking = existing + [p for p in [out_dir / MONTAGE_NAME] if p.exists()]
    if blocking and not overwrite:
        raise PetiteError(f"{blocking[0]}: already exists (use --overwrite to replace it)")
    for folder in existing:
        if not folder.is_dir():
            raise PetiteError(f"{folder}: exists and is not a folder")
        foreign = _foreign_entry(folder)
        if foreign is not None:
            raise PetiteError(f"{folder}: holds {foreign.name}, which petite simulate did not write; "
                              "remove the folder yourself")
    for folder in existing:
        shutil.rmtree(folder)


def _simulate_and_write(out_dir: str, subject_index: int, scanner_ids: Sequence[int], seed: int,
                        mode: str, cancel: Optional[CancelToken] = None, progress=None,
                        progress_base: int = 0, progress_total: int = 0) -> Dict[int, dict]:
    """Simulate one subject on every scanner and write its volumes; returns {scanner id: info}."""
    infos = {}
    for number, scan in enumerate(simulate_subject(subject_index, scanner_ids, seed, mode, cancel)):
        folder = Path(out_dir) / scan.scanner.name / scan.subject
        for name in VOLUMES:
            dtype = np.uint8 if name == "labels" else np.float32
            save_volume(folder / f"{name}.nii.gz", getattr(scan, name), scan.affine, dtype=dtype)
        infos[scan.scanner.id] = scan.info
        report(progress, "simulate", progress_base + number + 1, progress_total,
               f"{scan.subject} {scan.scanner.name}")
    return infos


def _worker(task) -> Dict[int, dict]:
    """Process-pool entry point: one subject (see :func:`_simulate_and_write`)."""
    return _simulate_and_write(*task)


def _one_line(text: str) -> str:
    """A docstring as one line (for scanner.json)."""
    return " ".join(text.split())


def _mean(values) -> Optional[float]:
    present = [v for v in values if v is not None]
    return round(float(np.mean(present)), 4) if present else None


def scanner_record(scanner: Scanner, mode: str, seed: int, subjects: List[dict]) -> dict:
    """The JSON document written as ``scanner<k>/scanner.json`` (plain, deterministic values).

    The scanner's fields (:meth:`Scanner.to_json`: id, matrix, spacing, manufacturer, ...) sit at
    the top level, where :mod:`PETITELib.data.cohort` looks for them.
    """
    noise = {image: {measure: _mean(s["white_matter"][image][measure] for s in subjects)
                     for measure in ("noise", "cov")} for image in ("short", "long")}
    return {
        **scanner.to_json(),
        "affine": scanner.affine().tolist(),
        "generator": "petite simulate", "petite_version": __version__, "mode": mode, "seed": seed,
        "units": "Bq/mL, decay-corrected to the acquisition start (30 min after injection)",
        "volumes": {
            "short": "first 5-minute frame (0-5 min of the acquisition)",
            "long": "mean of the six 5-minute frames (0-30 min)",
            "truth": "the scanner's noise-free image: the activity through its resolution, "
                     "corrections, reconstruction and calibration without noise (the reference "
                     "a reconstruction can show at best)",
            "activity": "true activity at the acquisition start averaged over each voxel (no blur, "
                        "no calibration)",
            "labels": "dominant tissue / region per voxel, see 'labels'",
        },
        "labels": {str(k): v for k, v in LABELS.items()},
        "protocol": {
            "tracer": "F-18 FDG", "half_life_min": physics.F18_HALF_LIFE_S / 60.0,
            "injected_dose_mbq": "N(185, 18.5) clipped to [150, 220], per scan",
            "uptake_time_min": physics.UPTAKE_TIME_S / 60.0,
            "frames": f"{physics.N_FRAMES} x {physics.FRAME_S / 60.0:g} min",
        },
        "model": {
            "anatomy": _one_line(anatomy.__doc__),
            "placement": _one_line(placement.__doc__),
            "forward_grid": f"{FINE_FACTOR}x finer than the scanner grid along every axis"
                            if mode == "full" else None,
            "physics": _one_line(physics.__doc__) if mode == "full" else None,
            "detectors": _one_line(detectors.__doc__) if mode == "full" else None,
            "attenuation": _one_line(attenuation.__doc__) if mode == "full" else None,
            "corrections": _one_line(corrections.__doc__) if mode == "full" else None,
            "reconstruction": _one_line(reconstruction.__doc__) if mode == "full" else None,
            "surrogate": _one_line(surrogate.__doc__) if mode == "fast" else None,
            "random_streams": "subject: (seed, 1, subject index); scan: (seed, 2, subject index, "
                              "scanner id); detector efficiencies: (seed, 3, scanner id)",
        },
        "white_matter_noise_mean": noise,
        "references": "docs/simulator.md lists every modelled difference between the scanners with its source",
        "subjects": subjects,
    }


def _write_montage(out_dir: Path, scanners: Sequence[Scanner], overwrite: bool) -> Path:
    """montage.png: central axial slices of sub-001's short, long and truth, one row per scanner."""
    from ...figures import save_montage

    def central_plane(path: Path) -> np.ndarray:  # a 1-slice volume: its centre is this plane
        array = load_volume(path).array
        return array[:, :, array.shape[2] // 2:array.shape[2] // 2 + 1].copy()

    rows = []
    for scanner in scanners:
        folder = out_dir / scanner.name / subject_name(0)
        label = f"{scanner.name} {'x'.join(str(n) for n in scanner.matrix)}"
        rows.append((label, [central_plane(folder / f"{name}.nii.gz")
                             for name in ("short", "long", "truth")]))
    # Every Table 4 scanner has square in-plane voxels, so one aspect ratio suits all rows.
    return save_montage(out_dir / MONTAGE_NAME, rows,
                        ["short (0-5 min)", "long (mean of 6 frames)", "truth"],
                        spacing=(1.0, 1.0, 1.0), overwrite=overwrite)


def _run_parallel(tasks, jobs: int, progress, cancel, per_task: int, total: int) -> List[Dict[int, dict]]:
    """Run subject tasks in ``jobs`` spawned processes; returns their results in task order."""
    results: Dict[int, Dict[int, dict]] = {}
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs) as pool:
        pending = {i: pool.apply_async(_worker, (task,)) for i, task in enumerate(tasks)}
        while pending:
            try:
                check_cancel(cancel)
            except Cancelled:
                pool.terminate()
                raise
            for index, result in list(pending.items()):
                if result.ready():
                    results[index] = result.get()
                    del pending[index]
                    report(progress, "simulate", len(results) * per_task, total,
                           f"{subject_name(index)} done")
            if pending:
                next(iter(pending.values())).wait(_POLL_S)
    return [results[i] for i in range(len(tasks))]


def simulate_cohort(out_dir, scanners: Sequence = (1, 2, 3, 4, 5), subjects: int = 10,
                    seed: int = 0, mode: str = "full", jobs: int = 1, overwrite: bool = False,
                    progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> List[Path]:
    """Simulate ``subjects`` subjects on each scanner and write them under ``out_dir``.

    scanners: Table 4 ids (1..5) or :class:`Scanner` objects. seed: non-negative int; the same
    seed gives byte-identical volumes for any ``jobs`` (subjects run in parallel processes).
    mode: ``"full"`` (physics + OSEM, seconds to tens of seconds per scan) or ``"fast"``
    (image-domain surrogate, for tests). An existing ``out_dir/scanner<k>`` or montage is
    refused unless ``overwrite`` (then the old scanner folder is removed first, provided it
    holds only simulator output). Returns the written scanner folders, in scanner order.
    """
    require("sim", "petite simulate")
    seed, mode = check_seed(seed), check_mode(mode)
    subjects, jobs = _check_count(subjects, "--subjects"), _check_count(jobs, "--jobs")
    scanner_list = sorted({(s if isinstance(s, Scanner) else get_scanner(s)).id for s in scanners})
    if not scanner_list:
        raise PetiteError("--scanners: give at least one scanner id, e.g. 1,2,3,4,5")
    scanner_objects = [get_scanner(i) for i in scanner_list]
    out_dir = Path(out_dir)
    folders = [out_dir / s.name for s in scanner_objects]
    _prepare(out_dir, folders, overwrite)

    total = subjects * len(scanner_list)
    report(progress, "simulate", 0, total, f"{mode} mode")
    if jobs == 1:
        results = []
        for index in range(subjects):
            check_cancel(cancel)
            results.append(_simulate_and_write(str(out_dir), index, scanner_list, seed, mode, cancel,
                                               progress, index * len(scanner_list), total))
    else:
        tasks = [(str(out_dir), index, scanner_list, seed, mode) for index in range(subjects)]
        results = _run_parallel(tasks, min(jobs, subjects), progress, cancel, len(scanner_list), total)

    for scanner, folder in zip(scanner_objects, folders):
        record = scanner_record(scanner, mode, seed, [r[scanner.id] for r in results])
        text = json.dumps(record, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(folder / "scanner.json", text.encode("utf-8"))
    _write_montage(out_dir, scanner_objects, overwrite)
    return folders
