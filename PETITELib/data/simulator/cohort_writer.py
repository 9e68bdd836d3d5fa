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
Until then ``scanner<k>/.simulate-progress.json`` lists the subjects finished so far (mode, seed
and their records), so an interrupted run can be resumed (``resume=True``) without redoing them.
"""
from __future__ import annotations

import json
import multiprocessing
import re
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

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
PROGRESS_NAME = ".simulate-progress.json"  # an unfinished scanner folder's finished subjects
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
        if entry.name in ("scanner.json", PROGRESS_NAME) or entry.name.endswith(".tmp"):
            continue
        if not (entry.is_dir() and _SUBJECT_FOLDER.match(entry.name)):
            return entry
        for item in sorted(entry.iterdir()):
            if item.name not in allowed and not item.name.endswith(".tmp"):
                return item
    return None


def _progress_record(folder: Path) -> Optional[dict]:
    """The progress record of an unfinished scanner folder, or None (finished, foreign or unreadable)."""
    path = folder / PROGRESS_NAME
    if (folder / "scanner.json").exists() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) and isinstance(record.get("finished"), dict) else None
    except (OSError, ValueError):
        return None


def _write_progress(folder: Path, mode: str, seed: int, finished: Dict[int, dict]) -> None:
    """Record in ``folder`` the subjects finished so far: {subject index: that scanner's info}."""
    record = {"mode": mode, "seed": seed,
              "finished": {subject_name(index): info for index, info in sorted(finished.items())}}
    atomic_write_bytes(folder / PROGRESS_NAME, (json.dumps(record, allow_nan=False) + "\n").encode("utf-8"),
                       overwrite=True)


def _resumable(folder: Path, mode: str, seed: int, overwrite: bool) -> Optional[dict]:
    """The progress record of ``folder`` if it is an unfinished run with ``mode`` and ``seed``;
    None if there is none (or it differs and ``overwrite`` replaces the folder anyway)."""
    record = _progress_record(folder)
    if record is None or (record.get("mode"), record.get("seed")) == (mode, seed):
        return record
    if overwrite:
        return None
    raise PetiteError(f"{folder}: holds an unfinished simulation with seed {record.get('seed')} in "
                      f"{record.get('mode')} mode; resume it with that --seed and --mode, or use --overwrite")


def _prepare(out_dir: Path, folders: Sequence[Path], scanner_ids: Sequence[int], subjects: int, mode: str,
             seed: int, overwrite: bool, resume: bool) -> Dict[int, Dict[int, dict]]:
    """Refuse existing outputs unless ``overwrite`` (or, with ``resume``, an unfinished run with the
    same mode and seed); remove old scanner folders to replace them, and from resumed ones every
    subject not finished on all scanners. Returns the finished subjects: {index: {scanner id: info}}."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PetiteError(f"{out_dir}: exists and is not a folder")
    existing = [f for f in folders if f.exists()]
    for folder in existing:
        if not folder.is_dir():
            raise PetiteError(f"{folder}: exists and is not a folder")
    records = {f: _resumable(f, mode, seed, overwrite) for f in existing} if resume else {}
    resumed = [f for f in existing if records.get(f) is not None]
    blocking = [f for f in existing if f not in resumed] + [p for p in [out_dir / MONTAGE_NAME] if p.exists()]
    if blocking and not overwrite:
        unfinished = not resume and blocking[0].is_dir() and _progress_record(blocking[0]) is not None
        hint = "use --overwrite to replace it" + (", or --resume to continue that interrupted run" if unfinished else "")
        raise PetiteError(f"{blocking[0]}: already exists ({hint})")
    for folder in existing:
        foreign = _foreign_entry(folder)
        if foreign is not None:
            raise PetiteError(f"{folder}: holds {foreign.name}, which petite simulate did not write; "
                              "remove the folder yourself")
    finished: Dict[int, Dict[int, dict]] = {}
    if resumed and len(resumed) == len(folders):
        for index in range(subjects):
            infos = {scanner_id: records[folder]["finished"].get(subject_name(index))
                     for scanner_id, folder in zip(scanner_ids, folders)}
            written = all((folder / subject_name(index) / f"{name}.nii.gz").is_file()
                          for folder in folders for name in VOLUMES)
            if written and all(isinstance(info, dict) for info in infos.values()):
                finished[index] = infos
    kept = {subject_name(index) for index in finished}
    for folder in existing:
        if folder not in resumed:
            shutil.rmtree(folder)
            continue
        for entry in folder.iterdir():
            if entry.is_dir() and entry.name not in kept:
                shutil.rmtree(entry)
            elif entry.name.endswith(".tmp"):
                entry.unlink()
    for scanner_id, folder in zip(scanner_ids, folders):
        if folder in resumed:  # the record now lists exactly the subjects kept
            _write_progress(folder, mode, seed, {index: infos[scanner_id] for index, infos in finished.items()})
    return finished


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


def _run_parallel(tasks: Dict[int, tuple], jobs: int, progress, cancel, per_task: int, total: int,
                  record: Callable[[int, Dict[int, dict]], None]) -> None:
    """Run subject tasks ({index: task}) in ``jobs`` spawned processes, handing each result to
    ``record(index, result)`` as it arrives."""
    if not tasks:
        return
    done = total // per_task - len(tasks)
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs) as pool:
        pending = {index: pool.apply_async(_worker, (task,)) for index, task in tasks.items()}
        while pending:
            try:
                check_cancel(cancel)
            except Cancelled:
                pool.terminate()
                raise
            for index, result in list(pending.items()):
                if result.ready():
                    record(index, result.get())
                    del pending[index]
                    done += 1
                    report(progress, "simulate", done * per_task, total, f"{subject_name(index)} done")
            if pending:
                next(iter(pending.values())).wait(_POLL_S)


def simulate_cohort(out_dir, scanners: Sequence = (1, 2, 3, 4, 5), subjects: int = 10,
                    seed: int = 0, mode: str = "full", jobs: int = 1, overwrite: bool = False,
                    resume: bool = False, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None) -> List[Path]:
    """Simulate ``subjects`` subjects on each scanner and write them under ``out_dir``.

    scanners: Table 4 ids (1..5) or :class:`Scanner` objects. seed: non-negative int; the same
    seed gives byte-identical volumes for any ``jobs`` (subjects run in parallel processes).
    mode: ``"full"`` (physics + OSEM, seconds to tens of seconds per scan) or ``"fast"``
    (image-domain surrogate, for tests). An existing ``out_dir/scanner<k>`` or montage is
    refused unless ``overwrite`` (then the old scanner folder is removed first, provided it
    holds only simulator output). ``resume``: a scanner folder that an interrupted run with the
    same ``mode`` and ``seed`` left unfinished keeps the subjects it finished (on every scanner
    asked for) and only the rest are simulated; the files are the same as an uninterrupted run's.
    Returns the written scanner folders, in scanner order.
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
    total = subjects * len(scanner_list)
    finished = _prepare(out_dir, folders, scanner_list, subjects, mode, seed, overwrite, resume)
    report(progress, "simulate", len(finished) * len(scanner_list), total,
           f"{mode} mode" + (f", {len(finished)} subject(s) kept from the interrupted run" if finished else ""))

    def record(index: int, infos: Dict[int, dict]) -> None:  # after each subject: resumable from here
        finished[index] = infos
        for scanner, folder in zip(scanner_objects, folders):
            _write_progress(folder, mode, seed, {i: done[scanner.id] for i, done in finished.items()})

    pending = [index for index in range(subjects) if index not in finished]
    if jobs == 1:
        for index in pending:
            check_cancel(cancel)
            record(index, _simulate_and_write(str(out_dir), index, scanner_list, seed, mode, cancel,
                                              progress, len(finished) * len(scanner_list), total))
    else:
        tasks = {index: (str(out_dir), index, scanner_list, seed, mode) for index in pending}
        _run_parallel(tasks, min(jobs, len(tasks)), progress, cancel, len(scanner_list), total, record)

    for scanner, folder in zip(scanner_objects, folders):
        document = scanner_record(scanner, mode, seed, [finished[i][scanner.id] for i in range(subjects)])
        text = json.dumps(document, indent=2, allow_nan=False) + "\n"
        atomic_write_bytes(folder / "scanner.json", text.encode("utf-8"))
        (folder / PROGRESS_NAME).unlink(missing_ok=True)
    _write_montage(out_dir, scanner_objects, overwrite)
    return folders
