"""Where the head lies in the scanner, and resampling subject maps onto scanner grids.

Scanner coordinates are mm with the field-of-view centre at the origin (the scanner grid's
affine, :meth:`PETITELib.data.scanners.Scanner.affine`). The subject's brain centre (anchor) is
put on the scanner axis; axially it is centred too unless the top of the scalp would then come
closer than 8 mm to the top of the field of view, in which case the head is moved down (the
cerebellum, not the vertex, is cut in short fields of view, as in clinical brain PET). A random
pose per scan then rotates the head about the anchor (pitch N(0, 5) degrees, roll and yaw
N(0, 3) degrees, clipped at 2 sigma) and shifts it (N(0, 4) mm in-plane, N(0, 3) mm axially).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

TOP_MARGIN_MM = 8.0
_SLAB_SLICES = 16


@dataclass(frozen=True)
class Pose:
    """Rigid head pose: rotations in degrees about x (pitch), y (roll), z (yaw); shift in mm."""

    rotation_deg: Tuple[float, float, float]
    shift_mm: Tuple[float, float, float]

    def to_json(self) -> Dict[str, object]:
        """Rounded plain values for scanner.json."""
        return {"rotation_deg_xyz": [round(a, 3) for a in self.rotation_deg],
                "shift_mm_xyz": [round(s, 3) for s in self.shift_mm]}


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw a pose from ``rng`` (see the module docstring for the distributions)."""
    rotation = np.clip(rng.normal(0.0, [5.0, 3.0, 3.0]), -2 * np.array([5.0, 3.0, 3.0]),
                       2 * np.array([5.0, 3.0, 3.0]))
    shift = rng.normal(0.0, [4.0, 4.0, 3.0])
    return Pose(tuple(float(a) for a in rotation), tuple(float(s) for s in shift))


def _rotation(degrees) -> np.ndarray:
    """3x3 rotation matrix R = Rz @ Ry @ Rx for angles (degrees) about x, y, z."""
    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def scanner_to_subject(pose: Pose, anchor_mm, head_top_mm: float, fov_z_mm: float) -> np.ndarray:
    """4x4 map from scanner mm to subject mm for a head placed as described in the module docstring."""
    centre_z = min(0.0, fov_z_mm / 2.0 - TOP_MARGIN_MM - head_top_mm)
    rotation = _rotation(pose.rotation_deg)
    # scanner p = R (s - anchor) + (0, 0, centre_z) + shift  =>  s = R^T (p - t) + anchor
    t = np.array([0.0, 0.0, centre_z]) + np.asarray(pose.shift_mm)
    transform = np.eye(4)
    transform[:3, :3] = rotation.T
    transform[:3, 3] = np.asarray(anchor_mm, float) - rotation.T @ t
    return transform


def resample(volume: np.ndarray, volume_affine: np.ndarray, grid_affine: np.ndarray,
             grid_shape, scanner_to_volume: np.ndarray, order: int) -> np.ndarray:
    """Sample an (x, y, z) subject map on a scanner-space grid (zero outside the map).

    volume_affine: 4x4 voxel-to-subject mm of ``volume``; grid_affine: 4x4 voxel-to-scanner mm of
    the output grid of shape ``grid_shape``; scanner_to_volume: 4x4 scanner mm -> subject mm.
    order: 1 (trilinear, float32 output) or 0 (nearest, for labels; keeps the dtype).
    Works in slabs of slices to bound memory.
    """
    matrix = np.linalg.inv(volume_affine) @ scanner_to_volume @ grid_affine
    dtype = np.float32 if order else volume.dtype
    out = np.empty(tuple(grid_shape), dtype=dtype)
    for start in range(0, grid_shape[2], _SLAB_SLICES):
        stop = min(start + _SLAB_SLICES, grid_shape[2])
        offset = matrix[:3, 3] + matrix[:3, 2] * start
        out[:, :, start:stop] = ndimage.affine_transform(
            volume, matrix[:3, :3], offset=offset, output_shape=(grid_shape[0], grid_shape[1], stop - start),
            order=order, mode="constant", cval=0.0, prefilter=False, output=dtype)
    return out
