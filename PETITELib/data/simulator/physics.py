"""The PET acquisition model: from activity on a fine grid to Poisson counts in six frames.

Per 2D slice (parallel-beam, no oblique planes), with activity in Bq/mL at the acquisition
start (30 min after injection, as in ADNI's 30-60 min FDG protocol):

    trues/s   = count_scale / n_angles x pixel volume (mL) x efficiency x attenuation
                x PSF( projection of the fine activity )
    scatter/s = a broad blur of the attenuated trues (Gaussian sigma 40 mm radially, 20 mm
                axially, 10 degrees in angle) scaled to the scanner's scatter fraction
    randoms/s = flat over the sinogram, scaled to the randoms fraction
    frame f   ~ Poisson( decay-integral_f x (trues/s + scatter/s + randoms/s) )

The PSF is an isotropic Gaussian in-plane (applied exactly as a 1D blur along the radial bins,
which parallel-beam projection allows) and a Gaussian along the slices. Frames are six 5-minute
frames; F-18 decays with a 109.77 min half-life, and the decay integral of each frame
(seconds) makes later frames count less. Efficiencies are Gamma-distributed per detector pair
(coefficient of variation from the scanner) times a per-slice factor N(1, 0.03).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..scanners import Scanner
from .projector import SliceGeometry, forward_project

F18_HALF_LIFE_S = 109.77 * 60.0
UPTAKE_TIME_S = 30 * 60.0
FRAME_S = 300.0
N_FRAMES = 6
SCATTER_SIGMA_RADIAL_MM, SCATTER_SIGMA_AXIAL_MM, SCATTER_SIGMA_DEG = 40.0, 20.0, 10.0
PLANE_EFFICIENCY_SD = 0.03
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def decay_constant_per_s() -> float:
    """F-18 decay constant (1/s)."""
    return np.log(2.0) / F18_HALF_LIFE_S


def frame_decay_seconds() -> np.ndarray:
    """Decays per Bq of acquisition-start activity in each frame: shape (N_FRAMES,), seconds.

    Frame f spans [f * FRAME_S, (f + 1) * FRAME_S] after the acquisition start.
    """
    lam = decay_constant_per_s()
    starts = np.arange(N_FRAMES) * FRAME_S
    return (np.exp(-lam * starts) - np.exp(-lam * (starts + FRAME_S))) / lam


def detector_efficiencies(rng: np.random.Generator, shape, cv: float) -> np.ndarray:
    """Relative efficiency per sinogram bin, shape (n_angles, n_bins, n_slices), mean about 1.

    Gamma(1 / cv^2, cv^2) per bin times a per-slice factor N(1, 0.03) clipped to +-10 %.
    """
    pair = rng.gamma(1.0 / cv ** 2, cv ** 2, size=shape)
    plane = np.clip(rng.normal(1.0, PLANE_EFFICIENCY_SD, size=shape[2]), 0.9, 1.1)
    return (pair * plane[None, None, :]).astype(np.float32)


def attenuation_factors(geometry: SliceGeometry, mu_stack: np.ndarray) -> np.ndarray:
    """exp(-line integral of mu) per bin, (n_angles, n_bins, n_slices).

    mu_stack: (n_inside, n_slices) attenuation coefficients (1/mm) on ``geometry``'s pixels.
    """
    strip_sums = forward_project(geometry, mu_stack)  # sum of mu x area fraction over the strip
    return np.exp(-strip_sums * (geometry.pixel_mm ** 2 / geometry.bin_mm)).astype(np.float32)


def psf_blur(sinogram: np.ndarray, scanner: Scanner, bin_mm: float) -> np.ndarray:
    """Apply the scanner's Gaussian PSF to an (n_angles, n_bins, n_slices) sinogram (radial and axial)."""
    transaxial, axial = scanner.psf_fwhm_mm
    sigma = (0.0, transaxial * FWHM_TO_SIGMA / bin_mm, axial * FWHM_TO_SIGMA / scanner.spacing[2])
    return ndimage.gaussian_filter(sinogram, sigma=sigma, mode="constant")


@dataclass(frozen=True)
class AcquisitionModel:
    """Count rates at the acquisition start, all (n_angles, n_bins, n_slices) float32.

    trues: expected true coincidences per second. background: scatter + randoms per second.
    system_factor: counts per second per unit projected activity (Bq/mL summed along the
    strip on the scanner grid), i.e. what the reconstruction multiplies its projection by.
    """

    trues: np.ndarray
    background: np.ndarray
    system_factor: np.ndarray

    def expected_counts(self, frame: int) -> np.ndarray:
        """Expected prompts in ``frame`` (0-based), (n_angles, n_bins, n_slices) float64."""
        return frame_decay_seconds()[frame] * (self.trues.astype(np.float64) + self.background)

    def draw_frames(self, rng: np.random.Generator):
        """Poisson prompt counts for the N_FRAMES frames: list of float32 sinograms."""
        return [rng.poisson(self.expected_counts(f)).astype(np.float32) for f in range(N_FRAMES)]


def acquisition_model(scanner: Scanner, fine_geometry: SliceGeometry, fine_activity: np.ndarray,
                      scanner_geometry: SliceGeometry, mu_stack: np.ndarray,
                      efficiencies: np.ndarray) -> AcquisitionModel:
    """Count rates for one scan.

    fine_activity: (n_inside_fine, n_slices) activity in Bq/mL on the fine pixel grid (slices
    already averaged over the scanner's slice thickness). mu_stack: (n_inside, n_slices)
    attenuation (1/mm) on the scanner grid. efficiencies: from :func:`detector_efficiencies`.
    """
    per_view = scanner.count_scale / scanner.n_angles
    attenuation = attenuation_factors(scanner_geometry, mu_stack)
    projected = psf_blur(forward_project(fine_geometry, fine_activity), scanner, fine_geometry.bin_mm)
    fine_volume_ml = fine_geometry.pixel_mm ** 2 * scanner.spacing[2] / 1000.0
    attenuated = projected * attenuation * np.float32(per_view * fine_volume_ml)
    trues = attenuated * efficiencies
    degrees_per_view = 180.0 / scanner.n_angles
    scatter_sigma = (SCATTER_SIGMA_DEG / degrees_per_view, SCATTER_SIGMA_RADIAL_MM / fine_geometry.bin_mm,
                     SCATTER_SIGMA_AXIAL_MM / scanner.spacing[2])
    scatter_shape = ndimage.gaussian_filter(attenuated, sigma=scatter_sigma, mode="nearest") * efficiencies
    trues_total = float(trues.sum(dtype=np.float64))
    other = 1.0 - scanner.scatter_fraction - scanner.randoms_fraction
    scatter = scatter_shape * np.float32(scanner.scatter_fraction / other * trues_total
                                         / float(scatter_shape.sum(dtype=np.float64)))
    randoms_per_bin = scanner.randoms_fraction / other * trues_total / trues.size
    scanner_volume_ml = scanner_geometry.pixel_mm ** 2 * scanner.spacing[2] / 1000.0
    system_factor = efficiencies * attenuation * np.float32(per_view * scanner_volume_ml)
    background = (scatter + np.float32(randoms_per_bin)).astype(np.float32)
    return AcquisitionModel(trues.astype(np.float32), background, system_factor.astype(np.float32))
