"""Attenuation: the true attenuation of a scan and the mu-map the scanner's software estimates.

- CT-based (PET/CT): the CT is converted to 511 keV by bilinear scaling, which puts soft tissue
  at the water value (``MU_TISSUE``) and misjudges bone by ``bone_mu_error``; the map is then
  smoothed to PET resolution (``mu_smoothing_mm``). CT noise is negligible at PET resolution.
- Transmission (rotating Ge-68 rods or a Cs-137 point source): a blank scan of
  ``transmission_counts`` per bin and a transmission scan through the head, Poisson counts,
  line integrals ``log(blank / transmission)`` with the source's residual bias
  (``transmission_mu_bias``), filtered back-projection (ramp x Hann), smoothing and
  segmentation into the tissue classes the software knows (two classes put the skull at the
  soft-tissue value; three classes find only the skull that survives the smoothing).

Maps are (x, y, z) float32 in 1/mm on the scanner grid; attenuation factors are
``exp(-line integral)`` per sinogram bin, (n_angles, n_bins, n_slices) float32.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..scanners import MU_BONE, MU_TISSUE, Scanner
from .anatomy import MU_TISSUE_PER_MM
from .projector import SliceGeometry, forward_project, subset_angles, subset_matrices

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
BONE_THRESHOLD = (MU_TISSUE_PER_MM + MU_BONE) / 2.0  # true-map voxels above this are bone


def line_integrals(geometry: SliceGeometry, mu_stack: np.ndarray) -> np.ndarray:
    """Line integral of mu (dimensionless) per bin, (n_angles, n_bins, n_slices) float32.

    mu_stack: (n_inside, n_slices) attenuation coefficients (1/mm) on ``geometry``'s pixels.
    """
    return forward_project(geometry, mu_stack) * np.float32(geometry.pixel_mm ** 2 / geometry.bin_mm)


def attenuation_factors(geometry: SliceGeometry, mu_stack: np.ndarray) -> np.ndarray:
    """exp(-line integral of mu) per bin, (n_angles, n_bins, n_slices) float32."""
    return np.exp(-line_integrals(geometry, mu_stack)).astype(np.float32)


def _smooth(volume: np.ndarray, fwhm_mm: float, spacing) -> np.ndarray:
    if fwhm_mm <= 0:
        return volume
    return ndimage.gaussian_filter(volume, sigma=[fwhm_mm * FWHM_TO_SIGMA / s for s in spacing],
                                   mode="constant")


def filtered_back_projection(geometry: SliceGeometry, sinogram: np.ndarray, n_subsets: int) -> np.ndarray:
    """FBP (ramp x Hann window) of line-integral sinograms: (n_inside, n_slices) float32 in 1/mm.

    sinogram: (n_angles, n_bins, n_slices) line integrals. The back-projection uses the same
    strip weights as the forward model (the cached OSEM subset matrices for ``n_subsets``).
    """
    n_bins = geometry.n_bins
    padded = 2 * n_bins
    lag = np.fft.fftfreq(padded, d=1.0 / padded)  # integer bin lags 0, 1, ..., -1
    ramp = np.where(lag == 0, 0.25, np.where(lag % 2 == 1, -1.0 / (np.pi * np.maximum(np.abs(lag), 1)) ** 2, 0.0))
    response = np.abs(np.fft.rfft(ramp)) / geometry.bin_mm  # the sampled ramp's spectrum (Kak & Slaney)
    window = 0.5 * (1.0 + np.cos(np.pi * np.arange(response.size) / (response.size - 1)))
    spectrum = np.fft.rfft(sinogram, n=padded, axis=1) * (response * window)[None, :, None]
    filtered = np.fft.irfft(spectrum, n=padded, axis=1)[:, :n_bins, :].astype(np.float32)
    image = np.zeros((int(geometry.inside.sum()), sinogram.shape[2]), dtype=np.float32)
    for (_, transpose), views in zip(subset_matrices(geometry, n_subsets),
                                     subset_angles(geometry.n_angles, n_subsets)):
        image += transpose @ np.ascontiguousarray(filtered[views].reshape(-1, sinogram.shape[2]))
    return image * np.float32(np.pi / geometry.n_angles)


def _segment(mu: np.ndarray, classes) -> np.ndarray:
    """Each voxel set to the nearest class value (classes ascending, 1/mm)."""
    classes = np.asarray(classes, dtype=np.float32)
    thresholds = (classes[1:] + classes[:-1]) / 2.0
    return classes[np.searchsorted(thresholds, mu)]


def estimated_mu_map(scanner: Scanner, geometry: SliceGeometry, mu: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """The mu-map the scanner's software uses, (x, y, z) float32 in 1/mm (module docstring).

    mu: the true (x, y, z) map on the scanner grid. rng draws the transmission scan's counts.
    """
    corrections = scanner.corrections
    if corrections.attenuation == "ct":
        bone = mu > BONE_THRESHOLD
        converted = np.where(bone, mu * (1.0 + corrections.bone_mu_error), mu * (MU_TISSUE / MU_TISSUE_PER_MM))
        return _smooth(converted.astype(np.float32), corrections.mu_smoothing_mm, scanner.spacing).astype(np.float32)
    blank = corrections.transmission_counts
    integrals = line_integrals(geometry, geometry.pack(mu))
    counts = rng.poisson(blank * np.exp(-integrals.astype(np.float64)))
    measured = np.log(blank / np.maximum(counts, 1.0)) * (1.0 + corrections.transmission_mu_bias)
    stack = filtered_back_projection(geometry, measured.astype(np.float32), scanner.reconstruction.subsets)
    estimate = _smooth(np.maximum(geometry.unpack(stack), 0.0), corrections.mu_smoothing_mm, scanner.spacing)
    if corrections.segmentation_classes:
        estimate = _segment(estimate, corrections.segmentation_classes)
    return estimate.astype(np.float32)
