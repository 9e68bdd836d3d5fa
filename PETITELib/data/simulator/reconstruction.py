"""The scanner families' reconstructions for stacks of 2D slices, plus the post-filter.

Model of one frame's data y (per bin): E[y] = scale x factor x P(A B x) + background, where A is
the scanner-grid system matrix (:mod:`.projector`), factor the *measured* normalisation x the
*estimated* attenuation x the count scale, background the estimated scatter + randoms counts
(:mod:`.corrections`; zero for precorrected data) and scale the frame's decay integral (s), so
that x is in Bq/mL at the acquisition start (decay-corrected). By algorithm:

- ``op-osem``: ordinary-Poisson OSEM, P and B identities (no resolution model: the image keeps
  the scanner's PSF blur).
- ``psf-osem``: P is the scanner's PSF (radial and axial Gaussian on the sinogram), so the
  reconstruction recovers resolution slowly and overshoots at edges (Gibbs-like ringing), and
  its noise is blobby.
- ``ramla-blob``: x = B c with B a Kaiser-Bessel blob (order 2, radius ``blob_radius_voxels``,
  taper ``blob_alpha``; applied separably per axis), reconstructed by RAMLA: one view per
  sub-iteration, relaxed additive updates c += lambda_k c / S (A^T factor (y / E[y] - 1)) with
  lambda_k = relaxation / (1 + pass) and S the mean per-view sensitivity; successive views are
  far apart in angle (:func:`row_action_order`), as row-action methods require.
- ``fore-aw-osem``: OSEM of the precorrected, Fourier-rebinned data (background zero).
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
from scipy import ndimage, special

from ...progress import CancelToken, check_cancel
from ..scanners import Scanner
from .physics import FWHM_TO_SIGMA
from .projector import SliceGeometry, subset_angles, subset_matrices

_FLOOR = np.float32(1e-12)


def kaiser_bessel_profile(radius: float, alpha: float, order: int = 2) -> np.ndarray:
    """1D Kaiser-Bessel blob profile sampled at integer offsets within ``radius`` voxels, sum 1."""
    offsets = np.arange(-int(np.floor(radius)), int(np.floor(radius)) + 1, dtype=float)
    s = np.sqrt(np.clip(1.0 - (offsets / radius) ** 2, 0.0, None))
    profile = s ** order * special.iv(order, alpha * s) / special.iv(order, alpha)
    return profile / profile.sum()


def row_action_order(n_views: int) -> List[int]:
    """Views 0..n-1 in an order where successive views are far apart: view_k = k p mod n, with p
    the integer nearest n / golden ratio that is coprime with n (about 111 degrees per step)."""
    step = int(round(n_views / ((1 + 5 ** 0.5) / 2)))
    while np.gcd(step, n_views) != 1:
        step += 1
    return [(k * step) % n_views for k in range(n_views)]


class Reconstructor:
    """One scan's reconstruction (module docstring); reconstructs any number of frames.

    factor: (n_angles, n_bins, n_slices) counts per second per unit projected activity.
    """

    def __init__(self, scanner: Scanner, geometry: SliceGeometry, factor: np.ndarray) -> None:
        recon = scanner.reconstruction
        self.recon, self.geometry = recon, geometry
        self.n_slices = factor.shape[2]
        self.ramla = recon.algorithm == "ramla-blob"
        n_subsets = geometry.n_angles if self.ramla else recon.subsets
        self.matrices = subset_matrices(geometry, n_subsets)
        self.views = subset_angles(geometry.n_angles, n_subsets)
        self.factor = [self._rows(factor, v) for v in self.views]
        self.order = row_action_order(n_subsets) if self.ramla else list(range(n_subsets))
        self.psf_sigma = None
        if recon.algorithm == "psf-osem":
            transaxial, axial = recon.psf_model_fwhm_mm
            self.psf_sigma = (0.0, transaxial * FWHM_TO_SIGMA / geometry.bin_mm,
                              axial * FWHM_TO_SIGMA / scanner.spacing[2])
        self.blob = None
        if self.ramla:
            radius_mm = recon.blob_radius_voxels * scanner.spacing[0]
            self.blob = [kaiser_bessel_profile(radius_mm / s, recon.blob_alpha) for s in scanner.spacing]
        self.inverse_sensitivity, total = [], 0.0
        for subset, factor_rows in enumerate(self.factor):
            sensitivity = self._back(np.ones_like(factor_rows), subset)
            total = total + sensitivity
            if not self.ramla:
                self.inverse_sensitivity.append(1.0 / np.maximum(sensitivity, _FLOOR))
        self.total_sensitivity = total.sum(axis=0, dtype=np.float64)
        self.mean_sensitivity = (total / len(self.factor)).astype(np.float32)

    @staticmethod
    def _rows(sinogram: np.ndarray, views: np.ndarray) -> np.ndarray:
        """The (len(views) * n_bins, n_slices) rows of ``sinogram`` for the given views."""
        return np.ascontiguousarray(sinogram[views].reshape(-1, sinogram.shape[2]))

    def _psf(self, rows: np.ndarray) -> np.ndarray:
        if self.psf_sigma is None:
            return rows
        shaped = rows.reshape(-1, self.geometry.n_bins, self.n_slices)
        return ndimage.gaussian_filter(shaped, sigma=self.psf_sigma, mode="constant").reshape(rows.shape)

    def _basis(self, stack: np.ndarray) -> np.ndarray:
        """B (blob basis) on an (n_inside, n_slices) stack; symmetric, so also B^T."""
        if self.blob is None:
            return stack
        volume = self.geometry.unpack(stack)
        for axis, kernel in enumerate(self.blob):
            volume = ndimage.correlate1d(volume, kernel, axis=axis, mode="constant")
        return self.geometry.pack(volume)

    def _forward(self, image: np.ndarray, subset: int) -> np.ndarray:
        return self.factor[subset] * self._psf(self.matrices[subset][0] @ self._basis(image))

    def _back(self, rows: np.ndarray, subset: int) -> np.ndarray:
        return self._basis(self.matrices[subset][1] @ self._psf(self.factor[subset] * rows))

    def reconstruct(self, data: np.ndarray, scale: float, background: Optional[np.ndarray],
                    cancel: Optional[CancelToken] = None) -> np.ndarray:
        """The image of one frame: (n_inside, n_slices) float32 in Bq/mL.

        data, background: (n_angles, n_bins, n_slices) counts (background None: zero).
        scale: the frame's decay integral (s). Starts from a uniform image per slice that
        matches the net counts.
        """
        net = data.sum(axis=(0, 1), dtype=np.float64)
        if background is not None:
            net = net - background.sum(axis=(0, 1), dtype=np.float64)
        start = np.maximum(net, 0.0) / (scale * np.maximum(self.total_sensitivity, 1e-30))
        start = np.maximum(start, 1e-3 * max(float(start.mean()), 1e-12))
        image = np.repeat(start[None, :].astype(np.float32), self.matrices[0][0].shape[1], axis=0)
        data_rows = [self._rows(data, v) for v in self.views]
        background_rows: List[Optional[np.ndarray]] = [
            None if background is None else self._rows(background, v) for v in self.views]
        for iteration in range(self.recon.iterations):
            check_cancel(cancel)
            relaxation = np.float32(self.recon.relaxation / (1.0 + iteration))
            for subset in self.order:
                y, b = data_rows[subset], background_rows[subset]
                expected = np.float32(scale) * self._forward(image, subset)
                if b is not None:
                    expected += b
                ratio = y / np.maximum(expected, _FLOOR)
                if self.ramla:
                    step = self._back(ratio - 1.0, subset) / np.maximum(self.mean_sensitivity, _FLOOR)
                    image = np.maximum(image * (1.0 + relaxation * step), _FLOOR)
                else:
                    image *= self._back(ratio, subset) * self.inverse_sensitivity[subset]
        return self._basis(image).astype(np.float32)


def postfilter(volume: np.ndarray, fwhm_mm: float, spacing) -> np.ndarray:
    """Isotropic Gaussian post-filter of FWHM ``fwhm_mm`` on an (x, y, z) volume with ``spacing`` mm."""
    if fwhm_mm <= 0:
        return volume
    sigma = [fwhm_mm * FWHM_TO_SIGMA / s for s in spacing]
    return ndimage.gaussian_filter(volume, sigma=sigma, mode="constant").astype(np.float32)
