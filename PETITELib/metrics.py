"""Image-quality metrics of a reconstruction against a reference: PSNR, SSIM, NRMSE and error maps.

Every metric is computed over a region R of the volume, two ways:
- inside the head (default everywhere): R = a head mask of the *reference*
  (:func:`PETITELib.head_mask.head_mask` with ``dilate_mm=MASK_DILATE_MM``), or a given mask;
- over the whole volume (``*_whole``, as the paper reports): R = every voxel.
The figures differ because air (often most of the volume) is easy to get nearly right.

Definitions (pred P, reference Y, both (x, y, z) arrays in the same units):
- data range L = max(Y) - min(Y) over the whole reference volume (one L for both regions).
- MSE_R = mean over R of (P - Y)^2;  PSNR_R = 10 log10(L^2 / MSE_R) dB (inf when MSE_R = 0).
- NRMSE_R = sqrt(MSE_R) / L (range-normalised, as skimage ``normalization='min-max'``).
- SSIM map (Wang et al. 2004, in 3D): Gaussian window sigma 1.5 voxels truncated at radius 5
  (11^3 voxels), K1 = 0.01, K2 = 0.03, C1 = (K1 L)^2, C2 = (K2 L)^2, population (co)variances,
  'reflect' at the volume faces. SSIM_R = mean of the map over R restricted to the voxels at
  least 5 voxels from every face (where the window fits). The whole-volume value equals
  ``skimage.metrics.structural_similarity(Y, P, data_range=L, gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False)``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from .errors import PetiteError
from .head_mask import head_mask

MASK_DILATE_MM = 3.0
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def metric_mask(reference: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """The default evaluation region: the head mask of ``reference`` dilated by MASK_DILATE_MM mm."""
    return head_mask(reference, spacing, dilate_mm=MASK_DILATE_MM)


def data_range(reference: np.ndarray) -> float:
    """L = max - min of the reference volume (its units)."""
    return float(np.max(reference)) - float(np.min(reference))


def error_maps(prediction: np.ndarray, reference: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Signed (prediction - reference) and absolute error volumes, float32, in the input units."""
    signed = np.asarray(prediction, dtype=np.float32) - np.asarray(reference, dtype=np.float32)
    return signed, np.abs(signed)


def psnr_from_mse(mse: float, value_range: float) -> float:
    """PSNR in dB for a mean squared error and a data range in the same units (inf if mse == 0)."""
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(value_range ** 2 / mse))


def ssim_map(prediction: np.ndarray, reference: np.ndarray, value_range: float) -> np.ndarray:
    """Voxel-wise 3D SSIM (x, y, z) float32 with the window and constants of the module docstring.

    Computed on both volumes divided by ``value_range`` (SSIM is unchanged by a common
    scaling when C1 and C2 scale with it), which keeps float32 variances accurate.
    """
    x = np.asarray(reference, dtype=np.float32) / np.float32(value_range)
    y = np.asarray(prediction, dtype=np.float32) / np.float32(value_range)

    def window_mean(a):
        return ndimage.gaussian_filter(a, SSIM_SIGMA, truncate=SSIM_RADIUS / SSIM_SIGMA, mode="reflect")

    mu_x, mu_y = window_mean(x), window_mean(y)
    var_x = window_mean(x * x) - mu_x * mu_x
    var_y = window_mean(y * y) - mu_y * mu_y
    cov = window_mean(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2))


def ssim_interior(shape: Sequence[int]) -> np.ndarray:
    """Boolean (x, y, z) mask of the voxels where the whole SSIM window fits in the volume."""
    inside = np.zeros(tuple(shape), dtype=bool)
    inside[tuple(slice(SSIM_RADIUS, n - SSIM_RADIUS) for n in shape)] = True
    return inside


def compare_volumes(prediction: np.ndarray, reference: np.ndarray, mask: Optional[np.ndarray] = None,
                    spacing: Sequence[float] = (1.0, 1.0, 1.0), value_range: Optional[float] = None,
                    name: str = "reference") -> Dict[str, float]:
    """All metrics of ``prediction`` against ``reference`` ((x, y, z) arrays, same units).

    mask: boolean (x, y, z) evaluation region; default :func:`metric_mask` of the reference
    (``spacing`` in mm is used only for that). value_range: L, default :func:`data_range`.
    name: how messages refer to the reference (e.g. its file).
    Returns ``{"psnr", "ssim", "nrmse"}`` inside the mask and ``{"psnr_whole", "ssim_whole",
    "nrmse_whole"}`` over the whole volume; PSNR in dB, SSIM and NRMSE unitless.
    """
    prediction = np.asarray(prediction, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if prediction.shape != reference.shape or reference.ndim != 3:
        raise PetiteError(f"{name}: cannot compare shapes {prediction.shape} and {reference.shape} "
                          "(need two 3D volumes of one shape)")
    if min(reference.shape) < 2 * SSIM_RADIUS + 1:
        raise PetiteError(f"{name}: volume {reference.shape} is smaller than the 11-voxel SSIM window")
    value_range = data_range(reference) if value_range is None else float(value_range)
    if not value_range > 0:
        raise PetiteError(f"{name}: reference is constant (data range 0), metrics are undefined")
    mask = metric_mask(reference, spacing) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != reference.shape:
        raise PetiteError(f"{name}: mask shape {mask.shape} differs from volume shape {reference.shape}")
    interior = ssim_interior(reference.shape)
    if not (mask & interior).any():
        raise PetiteError(f"{name}: the head mask is empty (no activity found in the reference)")

    squared_error = np.square(prediction - reference, dtype=np.float32)
    ssim = ssim_map(prediction, reference, value_range)
    results = {}
    for suffix, region in (("", mask), ("_whole", None)):
        mse = float(np.mean(squared_error if region is None else squared_error[region], dtype=np.float64))
        ssim_region = interior if region is None else region & interior
        results["psnr" + suffix] = psnr_from_mse(mse, value_range)
        results["ssim" + suffix] = float(np.mean(ssim[ssim_region], dtype=np.float64))
        results["nrmse" + suffix] = float(np.sqrt(mse) / value_range)
    return results
