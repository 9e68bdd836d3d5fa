"""Ordered-subsets expectation maximisation (OSEM) for stacks of 2D slices, plus the post-filter.

Model of one frame's prompts y (per bin): E[y] = scale x (factor x (A x) + background), where A is
the scanner-grid system matrix (:mod:`.projector`), factor the per-bin counts per unit projected
activity (efficiency x attenuation x count scale, from the acquisition model), background the
scatter + randoms rate (assumed known exactly, as if estimated perfectly), and scale the frame's
decay integral (s). The image x is then in Bq/mL at the acquisition start (decay-corrected).
No resolution modelling: the reconstruction keeps the scanner's PSF blur, as ADNI-era OSEM did.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from ...progress import CancelToken, check_cancel
from .physics import FWHM_TO_SIGMA
from .projector import SliceGeometry, subset_angles, subset_matrices


class OSEM:
    """OSEM for one scan's system model; reconstructs any number of frames.

    geometry: the scanner's slice geometry. n_subsets: views are split into interleaved subsets.
    factor, background: (n_angles, n_bins, n_slices) arrays described in the module docstring.
    """

    def __init__(self, geometry: SliceGeometry, n_subsets: int, factor: np.ndarray,
                 background: np.ndarray) -> None:
        self.matrices = subset_matrices(geometry, n_subsets)  # (A_s, A_s transposed) pairs
        self.views = subset_angles(geometry.n_angles, n_subsets)
        self.factor = [self._rows(factor, v) for v in self.views]
        self.background = [self._rows(background, v) for v in self.views]
        sensitivity = [at @ f for (_, at), f in zip(self.matrices, self.factor)]
        self.total_sensitivity = sum(s.sum(axis=0, dtype=np.float64) for s in sensitivity)
        self.inverse_sensitivity = [1.0 / np.maximum(s, np.float32(1e-12)) for s in sensitivity]
        self.total_background = background.sum(axis=(0, 1), dtype=np.float64)

    @staticmethod
    def _rows(sinogram: np.ndarray, views: np.ndarray) -> np.ndarray:
        """The (len(views) * n_bins, n_slices) rows of ``sinogram`` for the given views."""
        return np.ascontiguousarray(sinogram[views].reshape(-1, sinogram.shape[2]))

    def reconstruct(self, counts: np.ndarray, scale: float, iterations: int,
                    cancel: Optional[CancelToken] = None) -> np.ndarray:
        """OSEM estimate from one frame's prompt ``counts`` (n_angles, n_bins, n_slices).

        scale: the frame's decay integral (s). Returns the (n_inside, n_slices) float32 image
        stack in Bq/mL, starting from a uniform image per slice that matches the net counts.
        """
        net = np.maximum(counts.sum(axis=(0, 1), dtype=np.float64) - scale * self.total_background, 0.0)
        start = net / (scale * self.total_sensitivity)
        start = np.maximum(start, 1e-3 * max(float(start.mean()), 1e-12))
        image = np.repeat(start[None, :].astype(np.float32), self.matrices[0][0].shape[1], axis=0)
        counts_by_subset = [self._rows(counts, v) for v in self.views]
        for _ in range(iterations):
            check_cancel(cancel)
            for (a, at), y, f, b, inverse in zip(self.matrices, counts_by_subset, self.factor,
                                                 self.background, self.inverse_sensitivity):
                expected = scale * (f * (a @ image) + b)
                image *= (at @ (f * y / expected)) * inverse
        return image


def postfilter(volume: np.ndarray, fwhm_mm: float, spacing) -> np.ndarray:
    """Isotropic Gaussian post-filter of FWHM ``fwhm_mm`` on an (x, y, z) volume with ``spacing`` mm."""
    if fwhm_mm <= 0:
        return volume
    sigma = [fwhm_mm * FWHM_TO_SIGMA / s for s in spacing]
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="constant").astype(np.float32)
