"""The sample pair shipped with PETITE, for Slicer's Sample Data module, the self-test and the console.

``Resources/SampleData/scanner4_short.nii.gz`` and ``scanner4_long.nii.gz``: one simulated
subject on scanner 4 of the paper's Table 4 (Philips, 128x128x90 voxels of 2 mm), made by the
PETITELib simulator in full mode (projection, Poisson counts, OSEM) with seed 0, subject 0, a
subject of no cohort the shipped models were trained on (those used seeds 100 and 200). Short
= the first 5-minute frame, long = the mean of six; (x, y, z) float32 in Bq/mL with the
scanner's 4x4 voxel-to-RAS affine (mm), values rounded to whole Bq/mL (a change of at most
0.5 Bq/mL, far below the scans' noise) so that the two files take about 4 MB together.

Using the pair needs only numpy and nibabel. Making it again needs the simulator's anatomy
templates (nilearn), so it is done once, outside Slicer: ``python -m PETITELib.sample_data``
rewrites the two files (same seed, same volumes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from .nifti_io import Volume, save_volume
from .progress import CancelToken, ProgressCallback, check_cancel, report

SAMPLE_SCANNER = 4
SAMPLE_SUBJECT = 0
SAMPLE_SEED = 0
SAMPLE_MODE = "full"
SAMPLE_NAME = f"PETITEScanner{SAMPLE_SCANNER}"  # the Sample Data module's name of the pair
TINY_COHORT_SUBJECTS = 3


def sample_data_dir() -> Path:
    """The folder of the shipped sample pair: ``Resources/SampleData`` beside the ``PETITELib``
    package (the same relative place in a source checkout and in an installed Slicer extension)."""
    return Path(__file__).resolve().parents[1] / "Resources" / "SampleData"


def sample_pair_paths(folder=None) -> Tuple[Path, Path]:
    """The (short, long) NIfTI files of the sample pair in ``folder`` (default :func:`sample_data_dir`)."""
    folder = Path(folder) if folder is not None else sample_data_dir()
    stem = f"scanner{SAMPLE_SCANNER}"
    return folder / f"{stem}_short.nii.gz", folder / f"{stem}_long.nii.gz"


def sample_node_names() -> Tuple[str, str]:
    """Names of the (short, long) volumes of the sample pair once loaded, e.g. in Slicer."""
    return f"PETITE scanner{SAMPLE_SCANNER} short", f"PETITE scanner{SAMPLE_SCANNER} long"


def write_sample_pair(folder=None, progress: Optional[ProgressCallback] = None,
                      cancel: Optional[CancelToken] = None) -> Tuple[Path, Path]:
    """Simulate the sample pair (see the module docstring) and write it to ``folder`` (default
    :func:`sample_data_dir`), replacing the files there. Needs the simulator (nilearn)."""
    from .data.simulator.scan import simulate_scan

    report(progress, "sample data", 0, 1, f"simulating scanner {SAMPLE_SCANNER} ({SAMPLE_MODE} mode)")
    scan = simulate_scan(SAMPLE_SCANNER, SAMPLE_SUBJECT, SAMPLE_SEED, mode=SAMPLE_MODE, cancel=cancel)
    check_cancel(cancel)
    paths = sample_pair_paths(folder)
    for path, array in zip(paths, (scan.short, scan.long)):
        save_volume(path, np.round(array).astype(np.float32), scan.affine, overwrite=True)
    report(progress, "sample data", 1, 1, "sample pair written")
    return paths


def write_tiny_cohort(folder, short: Volume, long: Volume, subjects: int = TINY_COHORT_SUBJECTS) -> Path:
    """Write a cohort folder of ``subjects`` pairs made from one (short, long) pair, for trying
    fine-tuning quickly (the self-test does): the pair itself, then copies mirrored left-right and
    shifted by a few voxels, all on the pair's grid (``folder/<id>/short.nii.gz`` and
    ``long.nii.gz``, the plain layout of :mod:`PETITELib.data.cohort`). Not a cohort to learn a
    scanner from: every subject is the same person. Returns ``folder``."""
    folder = Path(folder)
    for index in range(subjects):
        variants = []
        for volume in (short, long):
            array = volume.array[::-1] if index % 2 else volume.array
            variants.append(np.ascontiguousarray(np.roll(array, 2 * (index // 2), axis=1), dtype=np.float32))
        for role, array in zip(("short", "long"), variants):
            save_volume(folder / f"sub-{index + 1:02d}" / f"{role}.nii.gz", array, short.affine)
    return folder


if __name__ == "__main__":
    for written in write_sample_pair():
        print(written, f"{written.stat().st_size / 1e6:.2f} MB")
