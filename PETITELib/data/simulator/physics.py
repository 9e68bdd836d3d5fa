"""The PET acquisition model: from activity on a fine grid to Poisson counts in six frames.

Per 2D slice (parallel-beam, no oblique planes), with activity in Bq/mL at the acquisition
start (30 min after injection, as in ADNI's 30-60 min FDG protocol):

    trues/s   = count_scale / n_angles x pixel volume (mL) x efficiency x attenuation
                x PSF( projection of the fine activity )
    scatter/s = a broad blur of the attenuated trues (Gaussian sigma 40 mm radially, 20 mm
                axially, 10 degrees in angle) x efficiency, scaled to the scanner's scatter fraction
    randoms/s = flat over the field of view x efficiency, scaled to the randoms fraction
    frame f   ~ Poisson( decay-integral_f x (trues/s + scatter/s) + randoms-integral_f x randoms/s )
    delayed f ~ Poisson( randoms-integral_f x randoms/s )   (the delayed coincidence window)

Efficiency is the detector model of :mod:`.detectors` (crystals, blocks, head gaps, axial
sensitivity of a 3D acquisition). The PSF is an isotropic Gaussian in-plane (applied exactly as
a 1D blur along the radial bins, which parallel-beam projection allows) and a Gaussian along the
slices. Frames are six 5-minute frames; F-18 decays with a 109.77 min half-life: trues and
scatter follow the activity (decay integral), randoms its square (singles x singles), so later
frames count less and hold relatively fewer randoms.
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
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def decay_constant_per_s() -> float:
    """F-18 decay constant (1/s)."""
    return np.log(2.0) / F18_HALF_LIFE_S


def frame_decay_seconds(power: int = 1) -> np.ndarray:
    """Integral over each frame of (activity / activity at the acquisition start) ** power, seconds.

    Shape (N_FRAMES,). power 1: decays per Bq of acquisition-start activity (trues, scatter);
    power 2: the randoms' time integral (randoms grow with the square of the singles rate).
    Frame f spans [f * FRAME_S, (f + 1) * FRAME_S] after the acquisition start.
    """
    lam = power * decay_constant_per_s()
    starts = np.arange(N_FRAMES) * FRAME_S
    return (np.exp(-lam * starts) - np.exp(-lam * (starts + FRAME_S))) / lam


def psf_blur(sinogram: np.ndarray, fwhm_mm, bin_mm: float, slice_mm: float) -> np.ndarray:
    """Gaussian (transaxial, axial) FWHM ``fwhm_mm`` on an (n_angles, n_bins, n_slices) sinogram."""
    transaxial, axial = fwhm_mm
    sigma = (0.0, transaxial * FWHM_TO_SIGMA / bin_mm, axial * FWHM_TO_SIGMA / slice_mm)
    return ndimage.gaussian_filter(sinogram, sigma=sigma, mode="constant")


def scatter_kernel(sinogram: np.ndarray, scanner: Scanner, bin_mm: float) -> np.ndarray:
    """Broad Gaussian blur of an (n_angles, n_bins, n_slices) sinogram: the scatter's shape."""
    degrees_per_view = 180.0 / scanner.n_angles
    sigma = (SCATTER_SIGMA_DEG / degrees_per_view, SCATTER_SIGMA_RADIAL_MM / bin_mm,
             SCATTER_SIGMA_AXIAL_MM / scanner.spacing[2])
    return ndimage.gaussian_filter(sinogram, sigma=sigma, mode=("wrap", "nearest", "nearest"))


@dataclass(frozen=True)
class AcquisitionModel:
    """Count rates at the acquisition start, all (n_angles, n_bins, n_slices) float32 per second.

    trues, scatter, randoms: expected true, scattered and random coincidences per second.
    projected: the PSF-blurred projection of the activity (arbitrary units), kept for the
    scatter estimate of :mod:`.corrections`.
    """

    trues: np.ndarray
    scatter: np.ndarray
    randoms: np.ndarray
    projected: np.ndarray

    def expected_prompts(self, frame: int) -> np.ndarray:
        """Expected prompts in ``frame`` (0-based), (n_angles, n_bins, n_slices) float64."""
        return (frame_decay_seconds()[frame] * (self.trues.astype(np.float64) + self.scatter)
                + frame_decay_seconds(2)[frame] * self.randoms.astype(np.float64))

    def expected_delayed(self, frame: int) -> np.ndarray:
        """Expected delayed-window coincidences in ``frame``: the randoms, float64."""
        return frame_decay_seconds(2)[frame] * self.randoms.astype(np.float64)

    def draw_frames(self, rng: np.random.Generator, delayed: bool):
        """Poisson prompts (and, if ``delayed``, delayed coincidences) for the N_FRAMES frames.

        Returns a list of (prompts, delayed or None) float32 sinogram pairs.
        """
        frames = []
        for f in range(N_FRAMES):
            prompts = rng.poisson(self.expected_prompts(f)).astype(np.float32)
            late = rng.poisson(self.expected_delayed(f)).astype(np.float32) if delayed else None
            frames.append((prompts, late))
        return frames


def acquisition_model(scanner: Scanner, fine_geometry: SliceGeometry, fine_activity: np.ndarray,
                      attenuation: np.ndarray, efficiencies: np.ndarray) -> AcquisitionModel:
    """Count rates for one scan.

    fine_activity: (n_inside_fine, n_slices) activity in Bq/mL on the fine pixel grid (slices
    already averaged over the scanner's slice thickness). attenuation: true attenuation factors
    and efficiencies: true detector efficiencies, both (n_angles, n_bins, n_slices) on the
    scanner's sinogram (fine and scanner geometries share the sinogram sampling).
    """
    per_view = scanner.count_scale / scanner.n_angles
    projected = psf_blur(forward_project(fine_geometry, fine_activity), scanner.psf_fwhm_mm,
                         fine_geometry.bin_mm, scanner.spacing[2])
    fine_volume_ml = fine_geometry.pixel_mm ** 2 * scanner.spacing[2] / 1000.0
    attenuated = projected * attenuation * np.float32(per_view * fine_volume_ml)
    trues = attenuated * efficiencies
    scatter_shape = scatter_kernel(attenuated, scanner, fine_geometry.bin_mm) * efficiencies
    trues_total = float(trues.sum(dtype=np.float64))
    other = 1.0 - scanner.scatter_fraction - scanner.randoms_fraction
    scatter = scatter_shape * np.float32(scanner.scatter_fraction / other * trues_total
                                         / float(scatter_shape.sum(dtype=np.float64)))
    randoms = efficiencies * np.float32(scanner.randoms_fraction / other * trues_total
                                        / float(efficiencies.sum(dtype=np.float64)))
    return AcquisitionModel(trues.astype(np.float32), scatter.astype(np.float32), randoms.astype(np.float32),
                            projected.astype(np.float32))
