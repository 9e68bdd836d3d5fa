"""Small synthetic FDG "head" phantoms for the data, metrics and figure tests (no simulator needed).

Activity in relative units: grey matter 4, white matter 1, ventricles 0.05, skull 0.1, scalp 0.4,
air 0. Scans are Poisson counts of the blurred activity, post-smoothed like a reconstruction:
the short scan has 1/6 of the long scan's counts (as a 5-minute frame of a 30-minute scan).
"""
from pathlib import Path

import numpy as np
from scipy import ndimage

from PETITELib.nifti_io import save_volume

SPACING = (2.0, 2.0, 2.4)
BQ_PER_UNIT = 5000.0


def affine_for(spacing=SPACING, origin=(-40.0, -40.0, -36.0)) -> np.ndarray:
    """A 4x4 axis-aligned voxel-to-RAS affine (mm)."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def head_activity(shape=(40, 40, 30), seed: int = 0) -> np.ndarray:
    """(x, y, z) float32 activity of a head-shaped phantom, slightly different per ``seed``."""
    rng = np.random.default_rng(seed)
    centre = np.array(shape) / 2.0 + rng.uniform(-1, 1, 3)
    radii = np.array(shape) * np.array([0.36, 0.42, 0.40]) * rng.uniform(0.95, 1.05, 3)
    grid = np.indices(shape, dtype=np.float32)
    r = np.sqrt(sum(((g - c) / rad) ** 2 for g, c, rad in zip(grid, centre, radii)))
    activity = np.zeros(shape, dtype=np.float32)
    activity[r < 1.0] = 0.4       # scalp
    activity[r < 0.9] = 0.1       # skull
    activity[r < 0.8] = 4.0       # grey matter
    activity[r < 0.65] = 1.0      # white matter
    ventricles = np.sqrt(sum(((g - c) / (0.2 * rad)) ** 2 for g, c, rad in zip(grid, centre, radii))) < 1
    activity[ventricles] = 0.05
    return activity


def scan(activity: np.ndarray, counts_per_unit: float, seed: int) -> np.ndarray:
    """A reconstructed-looking scan in Bq/mL: blurred activity, Poisson counts, post-filter."""
    rng = np.random.default_rng(seed)
    blurred = ndimage.gaussian_filter(activity, 1.0)
    counts = rng.poisson(np.clip(blurred, 0, None) * counts_per_unit)
    return (ndimage.gaussian_filter(counts / counts_per_unit, 0.7) * BQ_PER_UNIT).astype(np.float32)


def short_and_long(shape=(40, 40, 30), seed: int = 0, counts_per_unit: float = 2.5):
    """(short, long, truth) arrays of one phantom subject; long has 6x the counts of short."""
    activity = head_activity(shape, seed)
    short = scan(activity, counts_per_unit, seed + 1000)
    long = scan(activity, 6 * counts_per_unit, seed + 2000)
    return short, long, activity * BQ_PER_UNIT


def write_plain_subject(folder: Path, seed: int = 0, shape=(40, 40, 30), affine=None,
                        truth: bool = False) -> Path:
    """Write ``folder/{short,long}[,truth].nii.gz`` for one phantom subject; returns ``folder``."""
    short, long, activity = short_and_long(shape, seed)
    affine = affine_for() if affine is None else affine
    save_volume(folder / "short.nii.gz", short, affine)
    save_volume(folder / "long.nii.gz", long, affine)
    if truth:
        save_volume(folder / "truth.nii.gz", activity, affine)
    return folder


def write_plain_cohort(root: Path, n_subjects: int = 3, shape=(40, 40, 30)) -> Path:
    """Write a clean plain-layout cohort ``root/sub-00i/...`` of ``n_subjects``; returns ``root``."""
    for i in range(n_subjects):
        write_plain_subject(root / f"sub-{i:03d}", seed=i, shape=shape)
    return root
