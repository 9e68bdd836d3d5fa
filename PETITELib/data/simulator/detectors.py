"""Detector efficiencies of a scanner and the normalisation its software measures.

The sinogram (n_angles views over 180 degrees, n_bins radial bins, n_slices planes) is mapped
onto a virtual ring of ``2 n_angles`` crystals of radius ``RING_RADIUS_FACTOR`` times the field
of view's radius: the line of view ``a`` at radial offset ``r`` joins the crystals at polar
angles ``theta_a +- arccos(r / R)``. Each line's efficiency is the product of its two crystals'
efficiencies (Gamma spread times the detector block's profile, zero in the gaps between flat
detector heads), a radial geometric factor, and its plane's efficiency (block-ring profile times
N(1, 0.03)). The 3D acquisition's axial sensitivity profile (planes near the ends of the axial
field of view collect fewer coincidences) multiplies it.

The normalisation the reconstruction divides by is measured, not exact: every crystal's factor
carries a relative error (finite counts of the normalisation scan), a fraction of the block
profile stays uncorrected (count-rate dependent block effects) and every plane a 0.5 % error.
All arrays are float32 (n_angles, n_bins, n_slices).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..scanners import Scanner
from .projector import SliceGeometry

RING_RADIUS_FACTOR = 1.35  # detector ring radius / field-of-view radius
PLANE_EFFICIENCY_SD = 0.03
PLANE_NORMALISATION_SD = 0.005
GEOMETRIC_FALLOFF = 0.15  # relative loss of a line's geometric efficiency at the FOV edge


@dataclass(frozen=True)
class DetectorEfficiencies:
    """True efficiencies (``true``) and the normalisation the scanner measures (``measured``)."""

    true: np.ndarray
    measured: np.ndarray
    axial_sensitivity: np.ndarray  # (n_slices,), 1 at the most sensitive plane


def _block_profile(count: int, period: int, edge_loss: float) -> np.ndarray:
    """(count,) relative efficiency along crystals (or planes) grouped in blocks of ``period``:
    1 in a block's centre falling to ``1 - edge_loss`` at its edges (quartic)."""
    if period < 2 or edge_loss <= 0:
        return np.ones(count)
    position = (np.arange(count) % period - (period - 1) / 2.0) / ((period - 1) / 2.0)
    return 1.0 - edge_loss * position ** 4


def _crystal_pairs(geometry: SliceGeometry, n_crystals: int):
    """Crystal indices (i, j) of every line, two (n_angles, n_bins) int arrays, and r / R."""
    radius = RING_RADIUS_FACTOR * geometry.fov_radius_mm
    theta = geometry.angles[:, None]
    offsets = (np.arange(geometry.n_bins) - (geometry.n_bins - 1) / 2.0) * geometry.bin_mm
    half = np.arccos(np.clip(offsets / radius, -1.0, 1.0))[None, :]
    to_index = n_crystals / (2.0 * np.pi)
    first = np.floor((theta + half) * to_index).astype(np.int64) % n_crystals
    second = np.floor((theta - half) * to_index).astype(np.int64) % n_crystals
    return first, second, offsets / radius


def axial_sensitivity(scanner: Scanner) -> np.ndarray:
    """(n_slices,) relative sensitivity of each plane of a 3D acquisition (max 1).

    A plane at distance u (mm) from the nearer end of the axial field of view collects ring
    pairs over min(u, D), D = max_ring_difference x half the axial FOV; the direct plane always
    counts (floor of one slice).
    """
    nz, dz = scanner.matrix[2], scanner.spacing[2]
    centres = (np.arange(nz) - (nz - 1) / 2.0) * dz
    half_fov = scanner.detector.axial_fov_mm / 2.0
    accepted = scanner.detector.max_ring_difference * half_fov
    to_end = np.maximum(half_fov - np.abs(centres), 0.0)
    profile = np.maximum(np.minimum(to_end, accepted), dz)
    return profile / profile.max()


def detector_efficiencies(rng: np.random.Generator, scanner: Scanner,
                          geometry: SliceGeometry) -> DetectorEfficiencies:
    """Draw one scanner's true efficiencies and its measured normalisation (module docstring)."""
    detector, corrections = scanner.detector, scanner.corrections
    nz = scanner.matrix[2]
    n_crystals = 2 * geometry.n_angles
    cv = detector.crystal_cv
    block = _block_profile(n_crystals, detector.block_crystals, detector.block_edge_loss)
    crystal = rng.gamma(1.0 / cv ** 2, cv ** 2, size=n_crystals) * block
    if detector.heads and detector.head_gap_fraction > 0:
        per_head = n_crystals / detector.heads
        gap = max(1, int(round(detector.head_gap_fraction * per_head)))
        in_head = np.arange(n_crystals) - np.floor(np.arange(n_crystals) / per_head) * per_head
        crystal = np.where(in_head >= per_head - gap, 0.0, crystal)
    crystal_error = 1.0 + corrections.normalisation_crystal_error * rng.standard_normal(n_crystals)
    plane = (np.clip(rng.normal(1.0, PLANE_EFFICIENCY_SD, size=nz), 0.9, 1.1)
             * _block_profile(nz, detector.block_planes, detector.block_edge_loss))
    plane_error = 1.0 + PLANE_NORMALISATION_SD * rng.standard_normal(nz)
    sensitivity = axial_sensitivity(scanner)

    first, second, radial = _crystal_pairs(geometry, n_crystals)
    geometric = 1.0 - GEOMETRIC_FALLOFF * radial ** 2
    line = crystal[first] * crystal[second] * geometric[None, :]
    residual = corrections.normalisation_block_residual
    line_measured = line * crystal_error[first] * crystal_error[second] / (block[first] * block[second]) ** residual
    axial = plane * sensitivity
    plane_measured = axial * plane_error / _block_profile(nz, detector.block_planes,
                                                           detector.block_edge_loss) ** residual
    true = line[:, :, None] * axial[None, None, :]
    measured = line_measured[:, :, None] * plane_measured[None, None, :]
    return DetectorEfficiencies(true.astype(np.float32), measured.astype(np.float32),
                                sensitivity.astype(np.float32))
