"""The volumes PETITE's models accept, and the reconstructions PETITE agrees to hand back.

Measured with the shipped UNETR (cpu preset) and its scanner adapters on simulated scans cut
to slabs (``Testing/benchmarks/input_domain.py``, docs/benchmarks/input-domain.json, discussed
in docs/reliability.md): the thinner the volume the smaller the gain over the short scan, and
below about 24-32 voxels (48-64 mm on a 2-mm grid) the reconstruction is worse than its input
(-4.5 dB for 8 slices of 2 mm); an 8 x 8 x 8 volume comes back far outside its input's range.
Hence:

- shape: at least MIN_VOXELS voxels and MIN_EXTENT_MM mm along every axis;
- voxel size: VOXEL_SIZE_MM[0] to VOXEL_SIZE_MM[1] mm along every axis (the shipped models were
  trained and scored on 1.02 to 2.43 mm; a zero or singular voxel axis is refused outright);
- values: real numbers, finite, with positive activity (99.9th percentile > 0) and at most
  NEGATIVE_FRACTION of the voxels below -NEGATIVE_LEVEL of the 99.9th percentile (the rule
  ``petite check-cohort`` applies to training scans too).

A reconstruction is refused, never written, when it holds a NaN or Inf voxel or leaves the sane
range of its input: below OUTPUT_LOW x the input's 99.9th percentile or above OUTPUT_HIGH x the
input's maximum (measured: shipped models -0.003 x to 0.90 x, untrained CvT-GANs -0.24 x to
1.12 x; an untrained UNETR -3.7 x, the 8-voxel noise cube -1.06 x).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import PetiteError

MIN_VOXELS = 16
MIN_EXTENT_MM = 48.0
VOXEL_SIZE_MM = (0.5, 4.0)
NEGATIVE_LEVEL = 0.01
NEGATIVE_FRACTION = 0.001
OUTPUT_LOW = -0.5
OUTPUT_HIGH = 2.0
REAL_KINDS = "iuf"  # numpy dtype kinds accepted as voxel values: signed, unsigned, floating


def _fmt(values: Sequence[float]) -> str:
    return "x".join(f"{float(v):.4g}" for v in values)


def check_array(volume, name: str = "input volume") -> np.ndarray:
    """``volume`` as a float32 (x, y, z) array; PetiteError (one line naming ``name``) for anything
    that is not a non-empty 3D array of finite real numbers (object, string, complex, boolean...)."""
    try:
        array = np.asarray(volume)
    except Exception as exc:  # ragged nested sequences and the like
        raise PetiteError(f"{name}: not an array of voxel values ({type(exc).__name__})") from None
    if array.dtype.kind not in REAL_KINDS:
        raise PetiteError(f"{name}: voxel values of type {array.dtype} are not real numbers "
                          "(expected a float or integer volume)")
    if array.ndim != 3:
        raise PetiteError(f"{name}: expected 3 dimensions (x, y, z), got shape {array.shape}")
    if array.size == 0:
        raise PetiteError(f"{name}: the volume is empty (shape {array.shape})")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise PetiteError(f"{name}: contains NaN or Inf values")
    return array


def check_affine(affine, name: str = "input affine") -> np.ndarray:
    """``affine`` as a float64 4x4 voxel-to-mm matrix; PetiteError (one line naming ``name``) when it
    is not one: wrong shape or type, NaN/Inf, a last row other than (0, 0, 0, 1), or a zero or
    singular voxel axis (no voxel size)."""
    try:
        matrix = np.asarray(affine)
    except Exception as exc:
        raise PetiteError(f"{name}: not a 4x4 affine ({type(exc).__name__})") from None
    if matrix.dtype.kind not in REAL_KINDS or matrix.shape != (4, 4):
        raise PetiteError(f"{name}: expected a 4x4 affine of real numbers, got shape {matrix.shape} "
                          f"of {matrix.dtype}")
    matrix = matrix.astype(np.float64)
    if not np.isfinite(matrix).all():
        raise PetiteError(f"{name}: affine contains NaN or Inf values")
    if not np.allclose(matrix[3], (0.0, 0.0, 0.0, 1.0)):
        raise PetiteError(f"{name}: affine's last row is {_fmt(matrix[3])}, expected 0x0x0x1")
    axes = matrix[:3, :3]
    sizes = np.linalg.norm(axes, axis=0)
    if not (sizes > 0).all() or abs(np.linalg.det(axes)) <= 1e-6 * float(np.prod(sizes)):
        raise PetiteError(f"{name}: affine has a zero or singular voxel axis (voxel sizes {_fmt(sizes)} mm); "
                          "every voxel needs a positive size along three independent axes")
    return matrix


def voxel_size(affine: np.ndarray) -> Tuple[float, float, float]:
    """Voxel size in mm along x, y, z: the column norms of a checked 4x4 affine."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def content_problem(array: np.ndarray) -> Optional[str]:
    """What is wrong with the values of a finite (x, y, z) volume for PETITE (no activity, or
    strongly negative values; see the module docstring), or None."""
    low, high = (float(v) for v in np.percentile(array, [100 * NEGATIVE_FRACTION, 99.9]))
    if not high > 0:
        return f"no positive activity (99.9th percentile is {high:g})"
    if low < -NEGATIVE_LEVEL * high:
        return (f"strongly negative values (0.1st percentile {low:g} is below -{NEGATIVE_LEVEL:.0%} of the "
                f"99.9th percentile {high:g}; accepted: at most {NEGATIVE_FRACTION:.1%} of the voxels below "
                f"-{NEGATIVE_LEVEL:.0%} of it)")
    return None


def geometry_problem(shape: Sequence[int], spacing: Sequence[float]) -> Optional[str]:
    """What puts a grid of ``shape`` voxels of ``spacing`` mm outside the accepted domain, or None."""
    extent = [n * s for n, s in zip(shape, spacing)]
    low, high = VOXEL_SIZE_MM
    if min(shape) < MIN_VOXELS:
        return (f"{_fmt(shape)} voxels: PETITE's models need at least {MIN_VOXELS} voxels along every axis "
                f"(and {MIN_EXTENT_MM:g} mm); smaller volumes come back worse than they went in")
    if not all(low <= s <= high for s in spacing):
        return f"voxel size {_fmt(spacing)} mm: accepted are {low:g} to {high:g} mm along every axis"
    if min(extent) < MIN_EXTENT_MM:
        return (f"extent {_fmt(extent)} mm: PETITE's models need at least {MIN_EXTENT_MM:g} mm along every axis "
                f"(and {MIN_VOXELS} voxels)")
    return None


def check_input(volume, affine, name: str = "input volume") -> Tuple[np.ndarray, np.ndarray]:
    """Check a volume and its affine against the accepted domain; returns (float32 array, float64
    affine). PetiteError, one line naming ``name`` and saying what would be accepted, otherwise."""
    array = check_array(volume, name)
    matrix = check_affine(affine, f"{name} affine" if not name.endswith("affine") else name)
    problem = geometry_problem(array.shape, voxel_size(matrix)) or content_problem(array)
    if problem:
        raise PetiteError(f"{name}: {problem}")
    return array, matrix


def check_reconstruction(output: np.ndarray, source: np.ndarray, name: str = "input volume",
                         check_range: bool = True) -> None:
    """Refuse (one-line PetiteError naming the input ``name``) a reconstruction of ``source`` that
    holds NaN/Inf voxels or (``check_range``) leaves the sane range of the input (see the module
    docstring)."""
    bad = int(output.size - np.count_nonzero(np.isfinite(output)))
    if bad:
        raise PetiteError(f"{name}: the reconstruction has {bad} non-finite (NaN or Inf) voxels and was not "
                          "written (the model is damaged or does not suit this volume)")
    if not check_range:
        return
    high, peak = float(np.percentile(source, 99.9)), float(np.max(source))
    lowest, highest = float(np.min(output)), float(np.max(output))
    floor, ceiling = OUTPUT_LOW * high, OUTPUT_HIGH * peak
    if lowest < floor or highest > ceiling:
        raise PetiteError(f"{name}: the reconstruction ({lowest:.4g} to {highest:.4g}) leaves the sane range of "
                          f"the input ({floor:.4g} to {ceiling:.4g}: {OUTPUT_LOW:g} x its 99.9th percentile to "
                          f"{OUTPUT_HIGH:g} x its maximum) and was not written (the model does not suit this volume)")
