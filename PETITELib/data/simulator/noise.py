"""Noise measured in uniform deep white matter, the numbers used to compare count levels.

Two numbers per image, both fractions of the noise-free image's mean in the region:
- ``noise``: std of (image - noise-free image), pure statistical noise;
- ``cov``: std / mean of the image itself, the usual ROI measure, which also counts the
  partial-volume structure the scanner's blur leaves inside white matter.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .template import WHITE_MATTER

DEEP_WM_MM = 6.0
UNIFORM_TOLERANCE = 0.05


def noise_region(labels: np.ndarray, truth: np.ndarray, spacing) -> np.ndarray:
    """Boolean (x, y, z) mask of uniform deep white matter.

    White-matter voxels at least 6 mm (``DEEP_WM_MM``) from any other label whose true activity
    is within 5 % of the median there (drops white matter with some grey-matter content, so the
    region's own spread is small and the image spread inside it is noise).
    """
    deep = ndimage.distance_transform_edt(labels == WHITE_MATTER, sampling=spacing) >= DEEP_WM_MM
    if not deep.any():
        return deep
    median = float(np.median(truth[deep]))
    return deep & (np.abs(truth - median) <= UNIFORM_TOLERANCE * median)


def region_noise(image: np.ndarray, noise_free: np.ndarray, region: np.ndarray) -> dict:
    """``{"noise": ..., "cov": ...}`` of ``image`` in ``region`` (see the module docstring).

    image, noise_free: (x, y, z) arrays of one shape; region: boolean mask from
    :func:`noise_region`. Values are None when the region is empty (a field of view that
    misses the white matter).
    """
    values = np.asarray(image, dtype=np.float64)[region]
    reference = np.asarray(noise_free, dtype=np.float64)[region]
    if values.size == 0 or reference.mean() <= 0:
        return {"noise": None, "cov": None}
    return {"noise": round(float((values - reference).std() / reference.mean()), 4),
            "cov": round(float(values.std() / values.mean()), 4)}
