"""Shared by the Slicer tests: repository paths, and PET-like heads on oblique, anisotropic grids."""
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "PETITE" / "PETITE.py"
UI_FILE = REPO / "Resources" / "UI" / "PETITE.ui"  # the module's resources are at the top level


def oblique_affine(spacing=(2.03642, 2.03642, 2.425), degrees=(20.0, -12.0),
                   origin=(-120.5, 98.25, -60.0)) -> np.ndarray:
    """A 4x4 IJK-to-RAS (mm) with anisotropic spacing, rotated about two axes (oblique)."""
    a, b = np.deg2rad(degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def pet_head(shape=(30, 26, 22), seed=0, counts_scale=4000.0) -> np.ndarray:
    """(x, y, z) float32 PET-like head in Bq/mL: hot cortex ring, warm inside, air outside, noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    radius = np.sqrt(sum(((g - c) / (0.42 * n)) ** 2 for g, c, n in zip(grid, centre, shape)))
    activity = np.where(radius < 1, np.where(radius > 0.75, 4.0, 1.0), 0.0)
    noisy = counts_scale * activity + rng.normal(0.0, 0.02 * counts_scale, shape) * (radius < 1.1)
    return np.clip(noisy, 0, None).astype(np.float32)
