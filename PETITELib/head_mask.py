"""The head mask of a PET volume, shared by the normalisation, the crop sampler and the metrics.

Construction (scale-invariant: multiplying the volume by c > 0 gives the same mask, up to
floating-point rounding at the threshold):
1. Gaussian-smooth the volume with sigma ``smooth_mm`` (mm, converted per axis with the spacing).
2. Threshold at ``fraction`` of its robust maximum: the 99th percentile of the smoothed voxels
   above 10 % of the smoothed maximum (so it does not depend on how much air the field of
   view holds, and one hot noise voxel barely moves it).
3. Fill holes in 3D, then in every axial (x, y) slice (closes the skull and sinuses also where
   the head touches the first or last slice of the field of view).
4. Keep the largest 26-connected component (drops the bed, isolated hot spots and noise).
5. Optionally dilate with an ellipsoid of radius ``dilate_mm`` (mm) to include the head's edge.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

SMOOTH_MM = 2.0
FRACTION = 0.05  # FDG scalp is about 10 % of grey matter; air stays far below 5 %
ROBUST_MAX_PERCENTILE = 99.0
ROBUST_MAX_FLOOR = 0.1


def smooth(volume: np.ndarray, spacing: Sequence[float], sigma_mm: float = SMOOTH_MM) -> np.ndarray:
    """Gaussian-smooth an (x, y, z) volume with ``sigma_mm`` mm along each axis (float32 result)."""
    sigma = [sigma_mm / float(s) for s in spacing]
    return ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma=sigma)


def ellipsoid(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """A boolean structuring element covering every voxel within ``radius_mm`` mm of the centre."""
    radii = [int(np.floor(radius_mm / float(s))) for s in spacing]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    distance_sq = sum((g * float(s)) ** 2 for g, s in zip(grids, spacing))
    return distance_sq <= radius_mm ** 2


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean (x, y, z) mask (empty mask -> empty)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return labels > 0
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes of a boolean (x, y, z) mask in 3D, then in every axial slice."""
    filled = ndimage.binary_fill_holes(mask)
    for k in range(filled.shape[2]):
        filled[:, :, k] = ndimage.binary_fill_holes(filled[:, :, k])
    return filled


def robust_max(smoothed: np.ndarray) -> float:
    """The ROBUST_MAX_PERCENTILE-th percentile of the voxels above ROBUST_MAX_FLOOR x the
    maximum of a smoothed volume (0.0 when the volume has no positive value)."""
    peak = float(np.max(smoothed))
    if not peak > 0:
        return 0.0
    return float(np.percentile(smoothed[smoothed > ROBUST_MAX_FLOOR * peak], ROBUST_MAX_PERCENTILE))


def mask_from_smoothed(smoothed: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                       fraction: float = FRACTION, dilate_mm: float = 0.0) -> np.ndarray:
    """Steps 2-5 of the head mask on an already smoothed (x, y, z) volume (spacing in mm).

    Returns an all-False mask when the volume has no positive activity.
    """
    reference = robust_max(smoothed)
    if not reference > 0:
        return np.zeros(smoothed.shape, dtype=bool)
    mask = largest_component(fill_holes(smoothed > fraction * reference))
    if dilate_mm > 0:
        mask = ndimage.binary_dilation(mask, structure=ellipsoid(dilate_mm, spacing))
    return mask


def head_mask(volume: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
              smooth_mm: float = SMOOTH_MM, fraction: float = FRACTION,
              dilate_mm: float = 0.0) -> np.ndarray:
    """Boolean (x, y, z) head mask of a PET ``volume`` (any units) with voxel ``spacing`` in mm.

    See the module docstring for the steps. Returns an all-False mask when the volume has no
    positive activity.
    """
    return mask_from_smoothed(smooth(volume, spacing, smooth_mm), spacing, fraction, dilate_mm)
