"""Which scanner a volume comes from, and which scanner profile (e.g. of an adapter) fits it best.

Plain Python, shared by the Slicer module (adapter ``auto``) and any other caller. A volume is
described by its grid, ``shape`` (x, y, z) in voxels and ``spacing`` (x, y, z) in mm, and, when
it was loaded from DICOM, by ``dicom = {"manufacturer": ..., "model": ...}`` (tags (0008,0070)
and (0008,1090); see :func:`PETITELib.slicer_bridge.dicom_scanner_info`). A scanner is described
by a :class:`ScannerProfile`: one of the paper's Table-4 scanners
(:data:`PETITELib.data.scanners.SCANNERS`), or the target scanner an adapter file records.

Evidence is scored by :func:`match_score`: 2 for the same matrix and voxel spacing, +1 for the
same vendor, +1 for the same model; anything known that disagrees rules the profile out. A
profile is picked (:func:`best_match`) only with some positive evidence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Tuple, TypeVar

from .data.scanners import SCANNERS, Scanner

SPACING_TOLERANCE_MM = 1e-3  # voxel spacings that differ by less (mm, per axis) are the same grid
GRID_SCORE = 2  # same matrix and spacing
VENDOR_SCORE = 1  # same manufacturer (first word, case-insensitive)
MODEL_SCORE = 1  # same model name (case-insensitive)

T = TypeVar("T")


@dataclass(frozen=True)
class ScannerProfile:
    """What is known of a scanner; every field may be unknown.

    id: Table-4 number (1..5), or None. matrix: voxels along (x, y, z) and spacing: voxel size in
    mm along (x, y, z), both known or both None. manufacturer, model: names as recorded ("" when
    unknown).
    """

    id: Optional[int] = None
    matrix: Optional[Tuple[int, int, int]] = None
    spacing: Optional[Tuple[float, float, float]] = None
    manufacturer: str = ""
    model: str = ""


def table4_profile(scanner: Scanner) -> ScannerProfile:
    """The profile of a Table-4 scanner: its id, matrix, spacing (mm) and manufacturer."""
    return ScannerProfile(scanner.id, scanner.matrix, scanner.spacing, scanner.manufacturer)


def scanner_profile(description: Optional[Mapping]) -> ScannerProfile:
    """Normalise a scanner description (e.g. an adapter's ``scanner`` metadata) to a profile.

    Accepts a simulated cohort's scanner.json (the Table-4 entry nested under ``"scanner"``), a
    Table-4 entry itself (:meth:`PETITELib.data.scanners.Scanner.to_json`), ``matrix`` and
    ``spacing`` (mm) lists, names (``manufacturer``/``model``, or the BIDS ``Manufacturer``/
    ``ManufacturersModelName``), or None/{} (nothing known). A Table-4 ``id`` brings that
    scanner's matrix, spacing and manufacturer; fields given explicitly take precedence.
    """
    flat = dict(description or {})
    if isinstance(flat.get("scanner"), Mapping):
        flat.update(flat.pop("scanner"))
    known = ScannerProfile()
    if str(flat.get("id", "")).isdigit() and int(flat["id"]) in SCANNERS:
        known = table4_profile(SCANNERS[int(flat["id"])])
    matrix, spacing = known.matrix, known.spacing
    if flat.get("matrix") and flat.get("spacing"):
        matrix = tuple(int(n) for n in flat["matrix"])
        spacing = tuple(float(v) for v in flat["spacing"])

    def name(*keys: str) -> str:  # text only: a simulated cohort's "model" is a dict describing the simulation
        return next((flat[key].strip() for key in keys if isinstance(flat.get(key), str) and flat[key].strip()), "")

    return ScannerProfile(known.id, matrix, spacing,
                          name("manufacturer", "Manufacturer") or known.manufacturer,
                          name("model", "ManufacturersModelName"))


def describe_scanner(profile: ScannerProfile) -> str:
    """One line for a profile, e.g. ``scanner 4, Philips Healthcare, 128x128x90 at 2x2x2 mm``."""
    parts = [f"scanner {profile.id}"] if profile.id is not None else []
    vendor = " ".join(name for name in (profile.manufacturer, profile.model) if name)
    if vendor:
        parts.append(vendor)
    if profile.matrix is not None:
        parts.append(f"{'x'.join(str(n) for n in profile.matrix)} at "
                     f"{'x'.join(f'{v:g}' for v in profile.spacing)} mm")
    return ", ".join(parts) or "unknown scanner"


def _vendor(name: str) -> str:
    """First word of a manufacturer name, lower case ("Philips Medical Systems" -> "philips")."""
    words = re.findall(r"[a-z0-9]+", name.lower())
    return words[0] if words else ""


def match_score(profile: ScannerProfile, shape: Sequence[int], spacing: Sequence[float],
                dicom: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """How well a volume fits ``profile``: None when anything known disagrees, else the evidence.

    shape: (x, y, z) voxels; spacing: (x, y, z) mm; dicom: the volume's DICOM manufacturer and
    model ({} or None when it did not come from DICOM). Score: :data:`GRID_SCORE` for the same
    matrix and spacing (within :data:`SPACING_TOLERANCE_MM`), + :data:`VENDOR_SCORE` for the same
    vendor, + :data:`MODEL_SCORE` for the same model (names only count when both sides know them).
    0 means nothing disagrees but nothing confirms either.
    """
    dicom = dicom or {}
    score = 0
    if profile.matrix is not None:
        if (tuple(int(n) for n in shape) != profile.matrix
                or any(abs(float(a) - b) > SPACING_TOLERANCE_MM for a, b in zip(spacing, profile.spacing))):
            return None
        score += GRID_SCORE
    if dicom.get("manufacturer") and profile.manufacturer:
        if _vendor(dicom["manufacturer"]) != _vendor(profile.manufacturer):
            return None
        score += VENDOR_SCORE
    if dicom.get("model") and profile.model:
        if dicom["model"].strip().lower() != profile.model.strip().lower():
            return None
        score += MODEL_SCORE
    return score


def best_match(candidates: Iterable[Tuple[ScannerProfile, T]], shape: Sequence[int], spacing: Sequence[float],
               dicom: Optional[Mapping[str, str]] = None) -> Optional[T]:
    """The item whose profile has the highest positive :func:`match_score`, or None when none has.

    candidates: (profile, item) pairs, e.g. (adapter's scanner profile, adapter); on a tie the
    first one given wins, so order them by preference.
    """
    best, best_score = None, 0
    for profile, item in candidates:
        score = match_score(profile, shape, spacing, dicom)
        if score is not None and score > best_score:
            best, best_score = item, score
    return best


def detect_scanner(shape: Sequence[int], spacing: Sequence[float],
                   dicom: Optional[Mapping[str, str]] = None) -> Optional[Scanner]:
    """The Table-4 :class:`~PETITELib.data.scanners.Scanner` a volume fits, or None.

    Matrix and voxel spacing must match; for a volume from DICOM the manufacturer must agree too.
    """
    return best_match(((table4_profile(s), s) for s in SCANNERS.values()), shape, spacing, dicom)
