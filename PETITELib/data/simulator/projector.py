"""Parallel-beam projection of a stack of 2D slices (the per-slice PET forward model).

Geometry: an ``n x n`` pixel grid of ``pixel_mm`` centred on the scanner axis; a sinogram of
``n_angles`` views over [0, pi) and ``n_bins`` radial bins of ``bin_mm`` centred on the axis.
Only pixels whose centre lies inside the field-of-view circle (radius ``n_bins * bin_mm / 2``)
take part, so images travel as ``(n_inside, n_slices)`` stacks (see :meth:`SliceGeometry.pack`).

The system matrix is exact strip-area weighting: the weight of pixel j in bin i at angle theta
is the fraction of the square pixel's area whose projection falls inside the bin. A square's
projection is a trapezoid (two rectangles convolved), whose cumulative area is written in
closed form below, so weights of every pixel at one angle sum to 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import List, Sequence, Tuple

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class SliceGeometry:
    """Pixel grid and sinogram sampling of one 2D slice (all lengths in mm)."""

    n_pixels: int
    pixel_mm: float
    n_bins: int
    bin_mm: float
    n_angles: int

    @property
    def angles(self) -> np.ndarray:
        """View angles in radians, shape (n_angles,), evenly spaced over [0, pi)."""
        return np.arange(self.n_angles) * (np.pi / self.n_angles)

    @property
    def fov_radius_mm(self) -> float:
        """Radius of the reconstructed field of view (mm)."""
        return self.n_bins * self.bin_mm / 2.0

    def pixel_centres(self) -> np.ndarray:
        """Pixel-centre coordinates along one axis (mm), shape (n_pixels,)."""
        return (np.arange(self.n_pixels) - (self.n_pixels - 1) / 2.0) * self.pixel_mm

    @property
    def inside(self) -> np.ndarray:
        """Boolean (n_pixels, n_pixels) mask of pixels whose centre lies inside the FOV circle."""
        c = self.pixel_centres()
        return c[:, None] ** 2 + c[None, :] ** 2 <= self.fov_radius_mm ** 2

    def pack(self, volume: np.ndarray) -> np.ndarray:
        """(n_pixels, n_pixels, n_slices) image -> (n_inside, n_slices) stack of FOV pixels."""
        return np.ascontiguousarray(volume[self.inside])

    def unpack(self, stack: np.ndarray) -> np.ndarray:
        """(n_inside, n_slices) stack -> (n_pixels, n_pixels, n_slices) image, zero outside the FOV."""
        volume = np.zeros((self.n_pixels, self.n_pixels, stack.shape[1]), dtype=stack.dtype)
        volume[self.inside] = stack
        return volume


def _trapezoid_cdf(u: np.ndarray, wide: np.ndarray, narrow: np.ndarray) -> np.ndarray:
    """Area fraction of a unit-area trapezoid (rect(wide) * rect(narrow)) left of offset ``u`` (mm)."""
    outer = (wide + narrow) / 2.0
    inner = (wide - narrow) / 2.0
    rising = (u + outer) ** 2 / (2.0 * wide * narrow)
    flat = narrow / (2.0 * wide) + (u + inner) / wide
    falling = 1.0 - (outer - u) ** 2 / (2.0 * wide * narrow)
    cdf = np.where(u < -inner, rising, np.where(u <= inner, flat, falling))
    return np.clip(np.where(u <= -outer, 0.0, np.where(u >= outer, 1.0, cdf)), 0.0, 1.0)


def _angle_weights(geometry: SliceGeometry, theta: float) -> Tuple[np.ndarray, np.ndarray]:
    """Bins and weights of every FOV pixel at one view: two (k, n_inside) arrays (k bins per pixel).

    Out-of-range bins carry weight 0 and a clipped (valid) bin index.
    """
    c = geometry.pixel_centres()
    inside = geometry.inside
    x = np.broadcast_to(c[:, None], inside.shape)[inside]
    y = np.broadcast_to(c[None, :], inside.shape)[inside]
    centre = x * np.cos(theta) + y * np.sin(theta)  # projected pixel centre, mm
    width_a = geometry.pixel_mm * abs(np.cos(theta))
    width_b = geometry.pixel_mm * abs(np.sin(theta))
    wide = max(width_a, width_b)
    narrow = max(min(width_a, width_b), 1e-6 * geometry.pixel_mm)
    half_span = (wide + narrow) / 2.0
    origin = -geometry.n_bins * geometry.bin_mm / 2.0  # left edge of bin 0
    first = np.floor((centre - half_span - origin) / geometry.bin_mm).astype(np.int64)
    n_touch = int(np.ceil(2.0 * half_span / geometry.bin_mm)) + 1
    bins = first[None, :] + np.arange(n_touch)[:, None]
    lower = origin + bins * geometry.bin_mm - centre[None, :]
    weights = (_trapezoid_cdf(lower + geometry.bin_mm, wide, narrow)
               - _trapezoid_cdf(lower, wide, narrow))
    valid = (bins >= 0) & (bins < geometry.n_bins)
    return np.clip(bins, 0, geometry.n_bins - 1), np.where(valid, weights, 0.0).astype(np.float32)


def system_matrix(geometry: SliceGeometry, angle_indices: Sequence[int]) -> sparse.csr_matrix:
    """Sparse system matrix for the given views: shape (len(angle_indices) * n_bins, n_inside).

    Row ``a * n_bins + b`` is bin b of the a-th listed view; columns are FOV pixels in
    :meth:`SliceGeometry.pack` order. Weights are dimensionless area fractions (float32).
    """
    rows, cols, vals = [], [], []
    n_inside = int(geometry.inside.sum())
    pixel_index = np.arange(n_inside)
    for position, angle_index in enumerate(angle_indices):
        bins, weights = _angle_weights(geometry, float(geometry.angles[angle_index]))
        keep = weights > 0
        rows.append((bins + position * geometry.n_bins)[keep])
        cols.append(np.broadcast_to(pixel_index, bins.shape)[keep])
        vals.append(weights[keep])
    shape = (len(angle_indices) * geometry.n_bins, n_inside)
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=shape, dtype=np.float32)


def forward_project(geometry: SliceGeometry, stack: np.ndarray) -> np.ndarray:
    """Project every slice of an (n_inside, n_slices) stack: (n_angles, n_bins, n_slices) float32.

    Builds one view's matrix at a time, so memory stays small even on fine grids.
    Units: sum of pixel values along each strip (pixel value x area fraction).
    """
    sinogram = np.empty((geometry.n_angles, geometry.n_bins, stack.shape[1]), dtype=np.float32)
    stack = np.asarray(stack, dtype=np.float32)
    for angle_index in range(geometry.n_angles):
        sinogram[angle_index] = system_matrix(geometry, [angle_index]) @ stack
    return sinogram


def subset_angles(n_angles: int, n_subsets: int) -> List[np.ndarray]:
    """Interleaved OSEM subsets: subset s holds views s, s + n_subsets, s + 2 n_subsets, ..."""
    return [np.arange(s, n_angles, n_subsets) for s in range(n_subsets)]


@lru_cache(maxsize=1)
def subset_matrices(geometry: SliceGeometry, n_subsets: int):
    """Per OSEM subset, the :func:`system_matrix` and its transpose, both CSR (fast products).

    Returns a tuple of (matrix, transpose) pairs. The last geometry's matrices stay cached
    (about 50-160 MB), so repeated scans on one scanner build them once.
    """
    pairs = []
    for angles in subset_angles(geometry.n_angles, n_subsets):
        matrix = system_matrix(geometry, angles)
        pairs.append((matrix, matrix.T.tocsr()))
    return tuple(pairs)


def scanner_geometry(scanner, refine: int = 1) -> SliceGeometry:
    """Slice geometry of a :class:`~PETITELib.data.scanners.Scanner`.

    The sinogram has ``matrix[0]`` radial bins of the x spacing and ``scanner.n_angles`` views;
    the image grid is the scanner's in-plane grid, or ``refine`` times finer (same field of view).
    """
    n, spacing = scanner.matrix[0], scanner.spacing[0]
    return SliceGeometry(n * refine, spacing / refine, n, spacing, scanner.n_angles)
