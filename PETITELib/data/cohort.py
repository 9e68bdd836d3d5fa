"""Cohort folders: pairs of short- and long-scan PET volumes, one pair per subject.

Two layouts are recognised (see docs/data.md, "Cohort folders"):

Plain (what ``petite simulate`` writes)::

    COHORT/scanner.json                 optional scanner description
    COHORT/<subject>/short.nii.gz       short scan (first 5-minute frame)
    COHORT/<subject>/long.nii.gz        long scan (reference, mean of the frames)
    COHORT/<subject>/truth.nii.gz       optional simulated ground truth
    COHORT/<subject>/labels.nii.gz      optional region labels on the long scan's grid (regional report)
    (.nii instead of .nii.gz also accepted; other files are ignored)

DICOM: ``COHORT/<subject>/short/`` and ``COHORT/<subject>/long/`` folders, each holding one PET
DICOM series (``petite simulate --format dicom`` writes them); any scan may be such a folder
instead of a NIfTI file (read by :func:`PETITELib.nifti_io.load_volume`). docs/dicom-and-regions.md.

BIDS-PET: ``COHORT/sub-*/[ses-*/]pet/*_rec-short_pet.nii.gz`` and ``*_rec-long_pet.nii.gz``
(optionally ``*_rec-truth_pet.nii.gz``) with JSON sidecars. Short and long are two static
reconstructions of one acquisition (different time windows), which is what BIDS-PET's
``rec-<label>`` entity describes; ``desc-`` is reserved for derivatives and ``run-`` means a
separate acquisition. Files that differ only in ``rec-`` form one subject, whose id is the
file name without ``rec-`` and the suffix (e.g. ``sub-01_ses-M00_trc-18FFDG``). A layout is
BIDS when ``dataset_description.json`` or any ``sub-*/[ses-*/]pet/`` folder exists.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import PetiteError
from ..input_domain import content_problem
from ..nifti_io import Volume, load_volume
from ..progress import CancelToken, ProgressCallback, check_cancel, report

ROLES = ("short", "long", "truth")
LABELS_ROLE = "labels"        # optional region labels of a plain-layout subject (NIfTI)
REQUIRED_ROLES = ("short", "long")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
SCANNER_FILE = "scanner.json"
BIDS_SCANNER_KEYS = ("Manufacturer", "ManufacturersModelName", "InstitutionName")
# scanner.json fields (PETITELib.data.scanners.Scanner.to_json, or BIDS names) that name a scanner
SCANNER_NAME_KEYS = ("manufacturer", "Manufacturer", "model_like", "ManufacturersModelName", "name")
MIN_SUBJECTS = 2              # one for training and one for validation
AFFINE_TOLERANCE_MM = 1e-3    # largest allowed difference of any affine element (mm)


@dataclass(frozen=True)
class Subject:
    """One subject (or session) of a cohort: paths of its short, long and optional truth scans
    (NIfTI files or DICOM series folders) and of its optional region labels (plain layout)."""

    subject_id: str
    short: Path
    long: Path
    truth: Optional[Path] = None
    labels: Optional[Path] = None


@dataclass(frozen=True)
class Cohort:
    """A cohort folder: its ``layout`` ("plain" or "bids"), subjects sorted by id, and the
    scanner description (``scanner.json``, or for BIDS the scanner fields of a sidecar; {} if none)."""

    root: Path
    layout: str
    subjects: Tuple[Subject, ...]
    scanner: Dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def scanner_name(self) -> str:
        """A short human-readable scanner name from the description ("" when unknown), e.g.
        "1 (Siemens HRRT-like dedicated brain PET)" from a simulator's scanner.json."""
        name = " ".join(str(self.scanner[k]) for k in SCANNER_NAME_KEYS if self.scanner.get(k))
        if "id" in self.scanner:
            return f"{self.scanner['id']} ({name})" if name else str(self.scanner["id"])
        return name


@dataclass
class _Found:
    """Result of scanning a folder: complete subjects, the structural problems seen, and the
    files of subjects missing a partner (id, existing files short first) so they are checked too."""

    layout: str
    subjects: List[Subject]
    problems: List[str]
    scanner: Dict
    incomplete: List[Tuple[str, List[Path]]] = field(default_factory=list)


def _nifti_file(folder: Path, stem: str) -> Optional[Path]:
    """``folder/stem.nii.gz`` (or ``.nii``), else a DICOM series folder ``folder/stem/``, else None."""
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / stem if (folder / stem).is_dir() else None


def _read_json(path: Path, problems: List[str]) -> Dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        problems.append(f"{path}: unreadable JSON ({exc})")
        return {}
    if not isinstance(content, dict):
        problems.append(f"{path}: expected a JSON object, found {type(content).__name__}")
        return {}
    return content


def _add_subject(found: _Found, subject_id: str, files: Dict[str, Path],
                 expected: Dict[str, Path]) -> None:
    """Add a Subject if short and long are both present; otherwise record the missing partner."""
    missing = [role for role in REQUIRED_ROLES if role not in files]
    for role in missing:
        present = next(files[r] for r in REQUIRED_ROLES if r in files)
        found.problems.append(f"{expected[role]}: missing ({role} scan partner of {present.name})")
    if missing:
        found.incomplete.append((subject_id, [files[r] for r in ROLES if r in files]))
    else:
        found.subjects.append(Subject(subject_id, files["short"], files["long"], files.get("truth"),
                                      files.get(LABELS_ROLE)))


def _is_bids(root: Path) -> bool:
    if (root / "dataset_description.json").is_file():
        return True
    return any(p.is_dir() for p in list(root.glob("sub-*/pet")) + list(root.glob("sub-*/ses-*/pet")))


def _find_plain(root: Path) -> _Found:
    found = _Found("plain", [], [], {})
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = {role: path for role in ROLES if (path := _nifti_file(folder, role)) is not None}
        if not any(role in files for role in REQUIRED_ROLES):
            continue
        labels = _nifti_file(folder, LABELS_ROLE)
        if labels is not None and labels.is_file():
            files[LABELS_ROLE] = labels
        expected = {role: folder / f"{role}{NIFTI_SUFFIXES[0]}" for role in REQUIRED_ROLES}
        _add_subject(found, folder.name, files, expected)
    scanner_file = root / SCANNER_FILE
    if scanner_file.is_file():
        found.scanner = _read_json(scanner_file, found.problems)
    return found


def _bids_entities(path: Path) -> Tuple[str, Optional[str]]:
    """(subject id, rec label) of a ``*_pet.nii[.gz]`` file name."""
    name = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    parts = name.split("_")[:-1]  # drop the "pet" suffix
    rec = next((p[len("rec-"):] for p in parts if p.startswith("rec-")), None)
    return "_".join(p for p in parts if not p.startswith("rec-")), rec


def _find_bids(root: Path) -> _Found:
    found = _Found("bids", [], [], {})
    groups: Dict[str, Dict[str, Path]] = {}
    folders = sorted(set(root.glob("sub-*/pet")) | set(root.glob("sub-*/ses-*/pet")))
    for folder in folders:
        for path in sorted(p for p in folder.iterdir() if p.name.endswith(("_pet.nii.gz", "_pet.nii"))):
            subject_id, rec = _bids_entities(path)
            if rec in ROLES:
                groups.setdefault(subject_id, {})[rec] = path
    sidecars = []
    for subject_id, files in sorted(groups.items()):
        folder = next(iter(files.values())).parent
        expected = {role: folder / f"{subject_id}_rec-{role}_pet.nii.gz" for role in REQUIRED_ROLES}
        if any(role in files for role in REQUIRED_ROLES):
            _add_subject(found, subject_id, files, expected)
        for path in files.values():
            sidecar = bids_sidecar(path)
            if sidecar.is_file():
                sidecars.append(_read_json(sidecar, found.problems))
    scanner_file = root / SCANNER_FILE
    if scanner_file.is_file():
        found.scanner = _read_json(scanner_file, found.problems)
    elif sidecars:
        found.scanner = {k: v for k, v in sidecars[0].items() if k in BIDS_SCANNER_KEYS}
    return found


def bids_sidecar(path: Path) -> Path:
    """The JSON sidecar path of a BIDS ``*_pet.nii[.gz]`` file."""
    name = path.name[: -len(".nii.gz")] if path.name.endswith(".nii.gz") else path.stem
    return path.with_name(name + ".json")


def _nested_cohorts(root: Path) -> List[str]:
    """Names of sub-folders of ``root`` that themselves look like plain cohorts."""
    return sorted(child.name for child in root.iterdir()
                  if child.is_dir() and any(_nifti_file(g, "short") for g in child.iterdir() if g.is_dir()))


def _find(root: Path) -> _Found:
    """Scan ``root`` (no volume is read): subjects and structural problems."""
    if not root.exists():
        return _Found("", [], [f"{root}: cohort folder not found"], {})
    if not root.is_dir():
        return _Found("", [], [f"{root}: not a folder (expected a cohort folder)"], {})
    found = _find_bids(root) if _is_bids(root) else _find_plain(root)
    if not found.subjects and not found.problems:
        nested = _nested_cohorts(root) if found.layout == "plain" else []
        hint = (f"; it holds cohorts ({', '.join(nested)}): pass one of them" if nested else
                "; expected <subject>/short.nii.gz + long.nii.gz (or short/ + long/ DICOM series folders) or BIDS "
                "sub-*/[ses-*/]pet/*_rec-short_pet.nii.gz + *_rec-long_pet.nii.gz")
        found.problems.append(f"{root}: no subjects found{hint}")
    return found


def load_cohort(root) -> Cohort:
    """Read a cohort folder's structure (fast: volumes are not opened).

    Raises PetiteError naming the first problem (missing folder, missing partner scan, unreadable
    JSON, no subjects); ``petite check-cohort`` lists all of them and checks the volumes too.
    """
    root = Path(root)
    found = _find(root)
    problem = first_problem(found.problems, root)
    if problem:
        raise PetiteError(problem)
    return Cohort(root, found.layout, tuple(found.subjects), found.scanner)


@dataclass
class CohortCheck:
    """Outcome of :func:`check_cohort`: every problem found (one line each) and, when the
    structure could be read, the cohort and its matrix sizes and voxel spacings (mm)."""

    problems: List[str]
    cohort: Optional[Cohort]
    shapes: List[Tuple[int, int, int]] = field(default_factory=list)
    spacings: List[Tuple[float, float, float]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def summary(self) -> str:
        """One line: subject count, layout, matrix and spacing (and scanner name when known)."""
        cohort = self.cohort
        if cohort is None:
            return "no cohort"
        matrices = ", ".join(sorted({"x".join(str(n) for n in s) for s in self.shapes}))
        spacings = ", ".join(sorted({"x".join(f"{v:.4g}" for v in s) for s in self.spacings}))
        scanner = f", scanner {cohort.scanner_name}" if cohort.scanner_name else ""
        return (f"{cohort.root}: {len(cohort)} subjects ({cohort.layout} layout), matrix {matrices}, "
                f"spacing {spacings} mm{scanner}")


def volume_problems(path: Path, array: np.ndarray) -> List[str]:
    """Content problems of one loaded (x, y, z) volume: NaN/Inf, no activity, strong negatives
    (the rule of :func:`PETITELib.input_domain.content_problem`, which reconstruction applies too)."""
    problems = []
    finite = np.isfinite(array)
    n_bad = int(array.size - np.count_nonzero(finite))
    if n_bad:
        problems.append(f"{path}: contains {n_bad} NaN or Inf voxels")
    values = array[finite] if n_bad else array.ravel()
    if values.size == 0:
        return problems
    problem = content_problem(values)
    if problem:
        problems.append(f"{path}: {problem}")
    return problems


def geometry_problem(path: Path, volume: Volume, reference_path: Path, reference: Volume) -> Optional[str]:
    """A one-line problem when ``volume`` differs in shape or affine from ``reference``, else None."""
    if volume.array.shape != reference.array.shape:
        shape = "x".join(str(n) for n in volume.array.shape)
        ref_shape = "x".join(str(n) for n in reference.array.shape)
        return f"{path}: shape {shape} differs from {reference_path.name} ({ref_shape})"
    difference = float(np.max(np.abs(volume.affine[:3] - reference.affine[:3])))
    if difference > AFFINE_TOLERANCE_MM:
        return (f"{path}: affine differs from {reference_path.name} (by up to {difference:.4g} mm, "
                f"tolerance {AFFINE_TOLERANCE_MM:g} mm)")
    return None


def _check_subject_volumes(subject_files: Sequence[Path], check: CohortCheck) -> None:
    """Load the files of one subject (short first), record content and geometry problems."""
    loaded = {}
    for path in subject_files:
        try:
            volume = load_volume(path, check_finite=False)
        except PetiteError as exc:
            check.problems.append(str(exc))
            continue
        check.problems.extend(volume_problems(path, volume.array))
        loaded[path] = volume
    first = subject_files[0]
    if first not in loaded:
        return
    check.shapes.append(tuple(loaded[first].array.shape))
    check.spacings.append(loaded[first].spacing)
    for path in subject_files[1:]:
        if path in loaded:
            problem = geometry_problem(path, loaded[path], first, loaded[first])
            if problem:
                check.problems.append(problem)


def _files_to_check(found: _Found) -> List[Tuple[str, List[Path]]]:
    """Per subject id, its existing scan files (short first), subjects missing a partner included."""
    groups = [(s.subject_id, [s.short, s.long] + ([s.truth] if s.truth else [])) for s in found.subjects]
    return sorted(groups + found.incomplete)


def check_subjects(subjects: Sequence[Subject], progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelToken] = None) -> List[str]:
    """Every content and geometry problem of these subjects' scans, one line each (see
    :func:`check_cohort`; the cohort's structure and subject count are not checked here)."""
    check = CohortCheck([], None)
    for index, subject in enumerate(subjects):
        check_cancel(cancel)
        _check_subject_volumes([subject.short, subject.long] + ([subject.truth] if subject.truth else []), check)
        report(progress, "check", index + 1, len(subjects), subject.subject_id)
    return check.problems


def first_problem(problems: Sequence[str], root) -> Optional[str]:
    """The first of ``problems`` as one line, counting the others, or None when there are none."""
    if not problems:
        return None
    more = (f" (and {len(problems) - 1} more problems: run 'petite check-cohort {root}')"
            if len(problems) > 1 else "")
    return problems[0] + more


def require_valid_cohort(root, progress: Optional[ProgressCallback] = None,
                         cancel: Optional[CancelToken] = None) -> Cohort:
    """The cohort at ``root`` after :func:`check_cohort` found no problem; otherwise PetiteError
    naming the first problem (the file at fault) and counting the rest. Reads every volume."""
    result = check_cohort(root, progress=progress, cancel=cancel)
    problem = first_problem(result.problems, root)
    if problem:
        raise PetiteError(problem)
    return result.cohort


SPLIT_STAGE = "split"  # the progress stage that announces a training run's split (see describe_split)


def describe_split(root, train: int, validate: int) -> str:
    """One line saying how a cohort is split, e.g. ``"sim/scanner4: 10 subjects: 8 train, 2 validate"``;
    training jobs report it as a progress event of stage :data:`SPLIT_STAGE` when they start."""
    return f"{root}: {train + validate} subjects: {train} train, {validate} validate"


def check_cohort(root, progress: Optional[ProgressCallback] = None,
                 cancel: Optional[CancelToken] = None) -> CohortCheck:
    """Validate a cohort folder in one pass and collect every problem, one line each.

    Checks: folder exists, subjects found, every short has its long partner (and vice versa),
    scanner.json / sidecars are valid JSON, every scan loads as a 3D NIfTI without NaN/Inf, has
    positive activity and no strongly negative values (0.1st percentile < -1 % of the 99.9th),
    long (and truth) match their short in shape and affine (AFFINE_TOLERANCE_MM), and at least
    MIN_SUBJECTS complete subjects exist. Reads every volume (one subject in memory at a time).
    """
    root = Path(root)
    found = _find(root)
    if not found.layout:
        return CohortCheck(found.problems, None)
    check = CohortCheck(list(found.problems), Cohort(root, found.layout, tuple(found.subjects), found.scanner))
    groups = _files_to_check(found)
    for index, (subject_id, files) in enumerate(groups):
        check_cancel(cancel)
        _check_subject_volumes(files, check)
        report(progress, "check-cohort", index + 1, len(groups), subject_id)
    if 0 < len(found.subjects) < MIN_SUBJECTS:
        check.problems.append(f"{root}: only {len(found.subjects)} complete subject(s); at least "
                              f"{MIN_SUBJECTS} are needed for a train/validation split")
    return check
