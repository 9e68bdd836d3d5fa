"""The fast image-domain surrogate of a scan (``--mode fast``): for tests and quick demos only.

Mean image = activity blurred by a Gaussian of the scanner's ``surrogate_fwhm_mm`` (transaxial,
axial) and scaled by its calibration. Noise = a Gaussian-smoothed white-noise field (correlation
FWHM ``surrogate_noise_fwhm_mm``) with standard deviation ``cov x m_wm x (m / m_wm)^0.75``, where
m is the mean image, m_wm its mean in uniform deep white matter (:func:`.noise.noise_region`)
and cov the scanner's ``surrogate_short_noise``. The three numbers are measured on full-mode
scans (:func:`.calibration.measure_surrogate`), so the surrogate follows the full mode's
resolution and noise, not its textures or artifacts. The long scan averages six frames whose noise grows with
the F-18 decay of later frames, and shares the first frame's noise with the short scan, as in
full mode. Negative values are clipped to 0 and
everything outside the field-of-view circle is 0. No sinograms, no reconstruction.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy import ndimage

from ...errors import PetiteError
from ..scanners import Scanner
from .physics import FWHM_TO_SIGMA, frame_decay_seconds
from .projector import scanner_geometry

NOISE_EXPONENT = 0.75


def _unit_noise(rng: np.random.Generator, shape, sigma_voxels) -> np.ndarray:
    """Smoothed standard-normal field rescaled to unit standard deviation (float32)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma=sigma_voxels)
    return field / np.float32(field.std())


def surrogate_scans(scanner: Scanner, activity: np.ndarray, white_matter: np.ndarray,
                    rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(short, long, mean) (x, y, z) float32 images in Bq/mL imitating the full model.

    activity: (x, y, z) activity in Bq/mL on the scanner grid; white_matter: boolean mask of the
    uniform deep white matter (:func:`.noise.noise_region`) that sets the noise level.
    mean is the noise-free image (the blurred, calibrated activity inside the field of view).
    """
    spacing = np.asarray(scanner.spacing)
    blur_fwhm = np.array([scanner.surrogate_fwhm_mm[0]] * 2 + [scanner.surrogate_fwhm_mm[1]])
    mean = ndimage.gaussian_filter(activity, sigma=blur_fwhm * FWHM_TO_SIGMA / spacing)
    mean = mean * np.float32(scanner.corrections.calibration)
    if not white_matter.any():
        raise PetiteError(f"{scanner.name}: the field of view holds no white matter to set the noise level")
    reference = float(mean[white_matter].mean())
    short_sd = (scanner.surrogate_short_noise * reference
                * (np.maximum(mean, 0.0) / reference) ** NOISE_EXPONENT).astype(np.float32)
    noise_sigma = scanner.surrogate_noise_fwhm_mm * FWHM_TO_SIGMA / spacing
    first = _unit_noise(rng, activity.shape, noise_sigma)
    later = _unit_noise(rng, activity.shape, noise_sigma)
    decay = frame_decay_seconds()
    later_sd = np.float32(np.sqrt(np.sum(decay[0] / decay[1:])))
    fov = scanner_geometry(scanner).inside[:, :, None]
    short = np.where(fov, np.maximum(mean + short_sd * first, 0.0), 0.0)
    long = np.where(fov, np.maximum(mean + short_sd * (first + later_sd * later) / len(decay), 0.0), 0.0)
    return short.astype(np.float32), long.astype(np.float32), np.where(fov, mean, 0.0).astype(np.float32)
