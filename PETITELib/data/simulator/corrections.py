"""The data corrections a scanner's software applies to one frame before (or inside) reconstruction.

- Randoms: ``smoothed-delayed`` puts a variance-reduced delayed-window estimate into the model
  (ordinary-Poisson reconstruction; with variance reduction the estimate is close to the
  expected randoms, which is what is used); ``subtracted-delayed`` subtracts the frame's delayed
  coincidences from its prompts on line, so the data lose their Poisson statistics (variance
  prompts + delayed) and can go negative.
- Scatter: a model-based estimate with the scatter kernel of :mod:`.physics`, computed from the
  activity projection with the *estimated* attenuation and normalisation, and scaled to each frame's data in the sinogram tails (bins
  whose estimated attenuation factor is above ``TAIL_ATTENUATION``: lines that miss the head).
  The tail scale is fitted per plane and smoothed over ``scatter_axial_smoothing`` planes.
- Fourier rebinning (``fore_axial_blur_mm`` > 0): the rebinned data are blurred along the axis,
  more the farther a line runs from the scanner axis.
- Attenuation-weighted OSEM (``fore-aw-osem``) reconstructs the net data, prompts minus
  randoms minus scatter, clipped at zero (the clipping biases low-count regions upwards).

Sinograms are (n_angles, n_bins, n_slices) float32 counts in one frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy import ndimage

from ..scanners import Scanner
from .physics import FWHM_TO_SIGMA, AcquisitionModel, frame_decay_seconds, scatter_kernel
from .projector import SliceGeometry

TAIL_ATTENUATION = 0.97
FORE_BANDS = 8


@dataclass(frozen=True)
class FrameData:
    """What a reconstruction fits for one frame: ``data`` and the additive ``background`` counts
    (scatter + randoms in the model; None when they were subtracted from the data)."""

    data: np.ndarray
    background: Optional[np.ndarray]


def fore_axial_blur(sinogram: np.ndarray, geometry: SliceGeometry, fwhm_at_100_mm: float,
                    slice_mm: float) -> np.ndarray:
    """Blur each radial bin's planes with FWHM ``fwhm_at_100_mm x |r| / 100 mm`` (FORE's axial loss).

    The bins are grouped into ``FORE_BANDS`` bands of similar radius, each blurred at its mean width.
    """
    if fwhm_at_100_mm <= 0:
        return sinogram
    radius = np.abs((np.arange(geometry.n_bins) - (geometry.n_bins - 1) / 2.0) * geometry.bin_mm)
    edges = np.linspace(0.0, radius.max() + 1e-6, FORE_BANDS + 1)
    out = np.array(sinogram, dtype=np.float32, copy=True)
    for low, high in zip(edges[:-1], edges[1:]):
        bins = np.flatnonzero((radius >= low) & (radius < high))
        sigma = fwhm_at_100_mm * radius[bins].mean() / 100.0 * FWHM_TO_SIGMA / slice_mm
        if bins.size and sigma > 0.05:
            out[:, bins, :] = ndimage.gaussian_filter1d(sinogram[:, bins, :], sigma, axis=2, mode="nearest")
    return out


class FrameCorrections:
    """One scan's correction chain (module docstring), applied to each frame.

    model: the scan's true count rates (its projection and randoms are what the software's
    estimates start from). measured_efficiency, estimated_attenuation: the scanner's
    normalisation and attenuation factors, (n_angles, n_bins, n_slices).
    """

    def __init__(self, scanner: Scanner, geometry: SliceGeometry, model: AcquisitionModel,
                 measured_efficiency: np.ndarray, estimated_attenuation: np.ndarray) -> None:
        self.scanner, self.geometry = scanner, geometry
        self.randoms_rate = model.randoms
        self.scatter_shape = (scatter_kernel(model.projected * estimated_attenuation, scanner, geometry.bin_mm)
                              * measured_efficiency).astype(np.float32)
        self.tail = (estimated_attenuation > TAIL_ATTENUATION) & (measured_efficiency > 0)

    def _scatter(self, net: np.ndarray) -> np.ndarray:
        """The scatter estimate scaled to ``net`` (prompts minus randoms) in the tails, per plane."""
        planes = self.scanner.corrections.scatter_axial_smoothing
        numerator = np.where(self.tail, net, 0.0).sum(axis=(0, 1), dtype=np.float64)
        denominator = np.where(self.tail, self.scatter_shape, 0.0).sum(axis=(0, 1), dtype=np.float64)
        if planes > 1:
            numerator = ndimage.uniform_filter1d(numerator, planes, mode="nearest")
            denominator = ndimage.uniform_filter1d(denominator, planes, mode="nearest")
        scale = np.where(denominator > 0, np.maximum(numerator, 0.0) / np.maximum(denominator, 1e-30), 0.0)
        return self.scatter_shape * scale.astype(np.float32)[None, None, :]

    def prepare(self, prompts: np.ndarray, delayed: Optional[np.ndarray], frame: int) -> FrameData:
        """Corrected data of ``frame`` (0-based) from its ``prompts`` and ``delayed`` counts.

        delayed: the frame's delayed coincidences (``subtracted-delayed``), or None.
        """
        fore = self.scanner.reconstruction.fore_axial_blur_mm
        slice_mm = self.scanner.spacing[2]
        if self.scanner.corrections.randoms == "subtracted-delayed":
            net = fore_axial_blur(prompts - delayed, self.geometry, fore, slice_mm)
            return FrameData(np.maximum(net - self._scatter(net), 0.0).astype(np.float32), None)
        randoms = (frame_decay_seconds(2)[frame] * self.randoms_rate).astype(np.float32)
        prompts = fore_axial_blur(prompts, self.geometry, fore, slice_mm)
        return FrameData(prompts.astype(np.float32), randoms + self._scatter(prompts - randoms))
