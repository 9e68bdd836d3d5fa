"""Slice order, spacing and the voxel-to-RAS affine of a DICOM series from its Image Position and
Orientation (Patient), with the checks that make a stack of slices one volume.

DICOM positions are in the patient's LPS frame; the affine returned is RAS (nibabel's, NIfTI's):
``RAS = diag(-1, -1, 1) @ LPS``. Voxel (i, j, k) of the volume is column i, row j of slice k,
slices sorted along the normal ``row cosine x column cosine``. The slice step is the full vector
between consecutive Image Positions, so a gantry tilt (slices shifted along the rows) is kept as
a shear of the affine instead of being lost.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

import numpy as np

from ..errors import PetiteError
from .tags import tag_name

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
ORIENTATION_TOLERANCE = 1e-4        # largest allowed difference of a direction cosine between slices
SPACING_RELATIVE_TOLERANCE = 0.01   # a slice step may differ from the median step by 1 % ...
SPACING_ABSOLUTE_TOLERANCE_MM = 0.01  # ... or 0.01 mm, whichever is larger
MISSING_SLICE_FACTOR = 1.5          # a step this many times the median step means missing slices


@dataclass
class StackGeometry:
    """Where the slices go: ``order`` (indices into the series' files, along the normal), the
    volume ``shape`` (columns, rows, slices) and the 4x4 voxel-to-RAS ``affine`` (mm)."""

    order: List[int]
    shape: tuple
    affine: np.ndarray


def _values(dataset, keyword: str, path: Path, count: int) -> np.ndarray:
    value = getattr(dataset, keyword, None)
    if value is None or len(value) != count:
        raise PetiteError(f"{path}: missing or malformed {tag_name(keyword)}")
    try:
        return np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise PetiteError(f"{path}: malformed {tag_name(keyword)}: {value!r}") from None


def _mm(values) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _integer(dataset, keyword: str, path: Path) -> int:
    value = getattr(dataset, keyword, None)
    if value in (None, ""):
        raise PetiteError(f"{path}: missing {tag_name(keyword)}")
    return int(value)


def orientation(dataset, path: Path) -> tuple:
    """(row cosine, column cosine) of a slice in LPS, checked to be unit and orthogonal."""
    values = _values(dataset, "ImageOrientationPatient", path, 6)
    row, column = values[:3], values[3:]
    if (abs(np.linalg.norm(row) - 1.0) > 1e-3 or abs(np.linalg.norm(column) - 1.0) > 1e-3
            or abs(float(row @ column)) > 1e-3):
        raise PetiteError(f"{path}: Image Orientation (Patient) (0020,0037) is not two orthogonal unit "
                          f"vectors: {_mm(values)}")
    return row / np.linalg.norm(row), column / np.linalg.norm(column)


def stack_geometry(datasets: Sequence, files: Sequence[Path]) -> StackGeometry:
    """Sort the slices of one series along their normal and build the volume's RAS affine.

    Raises PetiteError naming the file at fault for: a missing Image Position/Orientation, Pixel
    Spacing, Rows or Columns; an orientation, matrix or pixel spacing that differs from the first
    slice's; two slices at one position (or several time frames); missing slices (a gap of
    ``MISSING_SLICE_FACTOR`` steps or more); uneven spacing or slices off the line of the others.
    """
    first, first_path = datasets[0], files[0]
    row, column = orientation(first, first_path)
    rows = _integer(first, "Rows", first_path)
    columns = _integer(first, "Columns", first_path)
    spacing = _values(first, "PixelSpacing", first_path, 2)
    if (spacing <= 0).any():
        raise PetiteError(f"{first_path}: Pixel Spacing (0028,0030) must be positive, got {_mm(spacing)}")
    positions = []
    for dataset, path in zip(datasets, files):
        other_row, other_column = orientation(dataset, path)
        if max(np.abs(other_row - row).max(), np.abs(other_column - column).max()) > ORIENTATION_TOLERANCE:
            raise PetiteError(f"{path}: Image Orientation (Patient) differs from {first_path.name}'s "
                              "(inconsistent slices in one series)")
        size = (_integer(dataset, "Rows", path), _integer(dataset, "Columns", path))
        if size != (rows, columns):
            raise PetiteError(f"{path}: {size[0]}x{size[1]} pixels where {first_path.name} has {rows}x{columns} "
                              "(inconsistent slices in one series)")
        other_spacing = _values(dataset, "PixelSpacing", path, 2)
        if np.abs(other_spacing - spacing).max() > 1e-4 * spacing.max():
            raise PetiteError(f"{path}: Pixel Spacing {_mm(other_spacing)} differs from {first_path.name}'s "
                              f"{_mm(spacing)} (inconsistent slices in one series)")
        positions.append(_values(dataset, "ImagePositionPatient", path, 3))
    if len(positions) < 2:
        raise PetiteError(f"{first_path.parent}: one slice only; a PET volume needs at least 2")
    normal = np.cross(row, column)
    along = np.array([p @ normal for p in positions])
    order = [int(i) for i in np.argsort(along, kind="stable")]
    _check_steps([positions[i] for i in order], along[order], [datasets[i] for i in order],
                 [files[i] for i in order])
    sorted_positions = [positions[i] for i in order]
    step = (sorted_positions[-1] - sorted_positions[0]) / (len(order) - 1)
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]     # along a row: the column index i, spaced by the column spacing
    lps[:3, 1] = column * spacing[0]  # down a column: the row index j, spaced by the row spacing
    lps[:3, 2] = step
    lps[:3, 3] = sorted_positions[0]
    return StackGeometry(order, (columns, rows, len(order)), LPS_TO_RAS @ lps)


def _check_steps(positions: List[np.ndarray], along: np.ndarray, datasets: list, files: List[Path]) -> None:
    """Refuse duplicate positions, gaps (missing slices), uneven steps and slices off the line."""
    steps = np.diff(along)
    for index, step in enumerate(steps):
        if step < SPACING_ABSOLUTE_TOLERANCE_MM:
            frames = getattr(datasets[0], "NumberOfTimeSlices", None)
            if frames not in (None, "") and int(frames) > 1:
                raise PetiteError(f"{files[0].parent}: a dynamic series of {int(frames)} time frames (Number of "
                                  "Time Slices (0054,0101)); PETITE reads one static PET volume: export one frame")
            raise PetiteError(f"{files[index + 1]}: at the same position as {files[index].name} (two slices at "
                              f"{along[index]:.3f} mm along the normal; inconsistent slices)")
    median = float(np.median(steps))
    tolerance = max(SPACING_ABSOLUTE_TOLERANCE_MM, SPACING_RELATIVE_TOLERANCE * median)
    for index, step in enumerate(steps):
        if step >= MISSING_SLICE_FACTOR * median:
            missing = int(round(step / median)) - 1
            raise PetiteError(f"{files[index + 1]}: {max(missing, 1)} slice(s) missing before this one (a gap of "
                              f"{step:.4g} mm after {files[index].name}; the slice spacing is {median:.4g} mm)")
        if abs(step - median) > tolerance:
            raise PetiteError(f"{files[index + 1]}: uneven slice spacing ({step:.4g} mm after {files[index].name}; "
                              f"the others are {median:.4g} mm)")
    first, last = positions[0], positions[-1]
    count = len(positions) - 1
    for index, position in enumerate(positions):
        expected = first + (last - first) * (index / count)
        if np.abs(position - expected).max() > tolerance:
            raise PetiteError(f"{files[index]}: Image Position (Patient) is off the line of the other slices "
                              f"(by {np.abs(position - expected).max():.4g} mm; inconsistent slices)")
