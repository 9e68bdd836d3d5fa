"""Smooth random 3D fields from separable Gaussian radial basis functions.

A field is a sum of Gaussian bumps (width ``length_mm``) on a fixed lattice spanning the MNI
head box, with standard-normal weights. The lattice does not depend on the grid the field is
evaluated on, so the same random draws give the same field on 1 mm and 2 mm grids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Box (mm, MNI) that the lattice covers, with one extra length on every side.
HEAD_BOX_MM = ((-100.0, 100.0), (-140.0, 100.0), (-115.0, 130.0))


def lattice_shape(length_mm: float) -> tuple:
    """Number of lattice points along x, y, z for bumps of width ``length_mm``."""
    return tuple(int(np.floor((hi - lo) / length_mm)) + 3 for lo, hi in HEAD_BOX_MM)


def _basis(axis_mm: np.ndarray, lo: float, count: int, length_mm: float) -> np.ndarray:
    """(len(axis_mm), count) Gaussian bump values of lattice points lo - length + k * length."""
    centres = lo - length_mm + length_mm * np.arange(count)
    return np.exp(-0.5 * ((np.asarray(axis_mm, float)[:, None] - centres[None, :]) / length_mm) ** 2)


@dataclass(frozen=True)
class SmoothField:
    """A smooth random field with unit RMS over the head box.

    weights: lattice weights, shape :func:`lattice_shape`; length_mm: bump width (Gaussian sigma);
    scale: factor making the RMS 1 (set by :meth:`draw`).
    """

    weights: np.ndarray
    length_mm: float
    scale: float = 1.0

    @classmethod
    def draw(cls, rng: np.random.Generator, length_mm: float) -> "SmoothField":
        """Draw standard-normal lattice weights from ``rng`` and normalise the field to unit RMS.

        The RMS is taken on a 4 mm sampling of the inner head box, independent of any grid.
        """
        unscaled = cls(rng.standard_normal(lattice_shape(length_mm)), float(length_mm))
        axes = [np.arange(lo + 20.0, hi - 20.0, 4.0) for lo, hi in HEAD_BOX_MM]
        rms = float(np.sqrt(np.mean(unscaled._raw(axes) ** 2)))
        return cls(unscaled.weights, unscaled.length_mm, 1.0 / rms)

    def _raw(self, axes: Sequence[np.ndarray]) -> np.ndarray:
        bases = [_basis(axis, lo, n, self.length_mm)
                 for axis, (lo, _), n in zip(axes, HEAD_BOX_MM, self.weights.shape)]
        field = np.einsum("abc,zc->abz", self.weights, bases[2])
        field = np.einsum("abz,yb->ayz", field, bases[1])
        return np.einsum("ayz,xa->xyz", field, bases[0])

    def evaluate(self, x_mm: np.ndarray, y_mm: np.ndarray, z_mm: np.ndarray) -> np.ndarray:
        """Field values (float32, shape (len(x), len(y), len(z))) on the grid of the 1D axes (mm)."""
        return (self._raw((x_mm, y_mm, z_mm)) * self.scale).astype(np.float32)
