"""Simulated short/long PET pairs to try PETITE with (Slicer's Sample Data module and the console).

A pair is made on first use with the PETITELib simulator in fast mode (its image-domain
surrogate: a few seconds, offline) and cached as NIfTI in a folder:
``scanner<N>_short.nii.gz`` and ``scanner<N>_long.nii.gz``, (x, y, z) float32 in Bq/mL on the
scanner's grid with its 4x4 voxel-to-RAS affine (mm). The same subject and seed are used every
time, so every installation gets identical volumes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from .nifti_io import save_volume
from .progress import CancelToken, ProgressCallback, check_cancel, report

# Two scanners of the paper's Table 4 with different vendors and grids, so that adapter
# selection by scanner has something to tell apart: 1 (Siemens, 192x192x136 at 1.22 mm) and
# 4 (Philips, 128x128x90 at 2 mm).
SAMPLE_SCANNERS = (1, 4)
SAMPLE_SUBJECT = 0
SAMPLE_SEED = 0


def sample_pair_paths(folder, scanner: int) -> Tuple[Path, Path]:
    """The cached (short, long) NIfTI files of ``scanner`` (id 1..5) in ``folder``."""
    folder = Path(folder)
    return folder / f"scanner{scanner}_short.nii.gz", folder / f"scanner{scanner}_long.nii.gz"


def sample_node_names(scanner: int) -> Tuple[str, str]:
    """Names of the (short, long) volumes of ``scanner`` once loaded, e.g. in Slicer."""
    return f"PETITE scanner{scanner} short", f"PETITE scanner{scanner} long"


def ensure_sample_pair(folder, scanner: int, progress: Optional[ProgressCallback] = None,
                       cancel: Optional[CancelToken] = None) -> Tuple[Path, Path]:
    """Return the (short, long) files of ``scanner``, simulating and saving them first if missing.

    Raises PetiteError for an unknown scanner id.
    """
    from .data.scanners import get_scanner

    scanner = get_scanner(scanner).id
    paths = sample_pair_paths(folder, scanner)
    if all(path.is_file() for path in paths):
        return paths
    report(progress, "sample data", 0, 1, f"simulating scanner {scanner} (fast mode)")
    from .data.simulator.scan import simulate_scan

    scan = simulate_scan(scanner, SAMPLE_SUBJECT, SAMPLE_SEED, mode="fast", cancel=cancel)
    check_cancel(cancel)
    for path, array in zip(paths, (scan.short, scan.long)):
        save_volume(path, array, scan.affine, overwrite=True)
    report(progress, "sample data", 1, 1, f"scanner {scanner} ready")
    return paths
