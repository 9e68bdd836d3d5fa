"""Measuring what the fast surrogate imitates, on full-physics scans.

For each scanner, from the first subjects of a full-mode cohort (``petite simulate --mode full``):
- ``fwhm_mm``: the (transaxial, axial) Gaussian FWHM that best turns the activity, times the best
  scale, into the scanner's noise-free image (least squares inside the head);
- ``short_noise``: the short frame's white-matter noise (:func:`.noise.region_noise`);
- ``noise_fwhm_mm``: the correlation FWHM of the short frame's noise, from its lag-one
  autocorrelation rho in-plane (Gaussian-smoothed white noise: rho = exp(-1 / (4 sigma^2))).

Run ``python -m PETITELib.data.simulator.calibration COHORT --out docs/benchmarks/simulator-noise.json``
(it also records the long scan's noise, for the docs) and copy the values into the scanners'
``surrogate_*`` fields; the slow test ``test_surrogate_matches_full_mode`` checks that they
still agree with a new full-mode scan.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from scipy import ndimage, optimize

from ...nifti_io import atomic_write_bytes, load_volume
from ..scanners import Scanner, get_scanner
from .noise import noise_region, region_noise
from .physics import FWHM_TO_SIGMA
from .scan import SimulatedScan

FWHM_BOUNDS_MM = (0.5, 14.0)


def _blur_error(scan: SimulatedScan, head: np.ndarray, fwhm: Sequence[float]) -> float:
    """Mean squared difference (head) between the truth and the best-scaled blurred activity."""
    spacing = np.asarray(scan.scanner.spacing)
    sigma = np.array([fwhm[0], fwhm[0], fwhm[1]]) * FWHM_TO_SIGMA / spacing
    blurred = ndimage.gaussian_filter(scan.activity, sigma)[head].astype(np.float64)
    truth = scan.truth[head].astype(np.float64)
    scale = float(blurred @ truth) / max(float(blurred @ blurred), 1e-30)
    return float(np.mean((scale * blurred - truth) ** 2))


def effective_fwhm(scan: SimulatedScan) -> tuple:
    """(transaxial, axial) FWHM in mm of the Gaussian that best maps activity to truth (head only)."""
    head = ndimage.binary_erosion(scan.activity > 0.05 * scan.activity.max(), iterations=2)
    fwhm = [5.0, 5.0]
    for _ in range(2):  # alternate one-dimensional searches
        for axis in (0, 1):
            def error(value, axis=axis):
                trial = list(fwhm)
                trial[axis] = value
                return _blur_error(scan, head, trial)
            fwhm[axis] = float(optimize.minimize_scalar(error, bounds=FWHM_BOUNDS_MM, method="bounded",
                                                        options={"xatol": 0.05}).x)
    return tuple(round(v, 2) for v in fwhm)


def noise_fwhm(scan: SimulatedScan) -> float:
    """In-plane correlation FWHM (mm) of the short frame's noise inside the deep white matter's
    bounding box of the head, from the lag-one autocorrelation along x and y."""
    noise = (scan.short - scan.truth).astype(np.float64)
    head = scan.truth > 0.2 * scan.truth.max()
    correlations = []
    for axis in (0, 1):
        a = np.take(noise, range(noise.shape[axis] - 1), axis=axis)
        b = np.take(noise, range(1, noise.shape[axis]), axis=axis)
        both = np.take(head, range(noise.shape[axis] - 1), axis=axis) & np.take(head, range(1, noise.shape[axis]), axis=axis)
        correlations.append(np.corrcoef(a[both], b[both])[0, 1])
    rho = float(np.clip(np.mean(correlations), 1e-3, 0.999))
    sigma_voxels = 1.0 / np.sqrt(-4.0 * np.log(rho))
    return round(float(sigma_voxels / FWHM_TO_SIGMA * scan.scanner.spacing[0]), 2)


def _scan_from_folder(scanner: Scanner, folder: Path) -> SimulatedScan:
    """A simulated subject read back from a cohort folder (short, long, truth, activity, labels)."""
    volumes = {name: load_volume(folder / f"{name}.nii.gz").array for name in
               ("short", "long", "truth", "activity", "labels")}
    return SimulatedScan(scanner, folder.name, volumes["short"], volumes["long"], volumes["truth"],
                         volumes["activity"], volumes["labels"].astype(np.uint8), scanner.affine(), {})


def measure_surrogate(scanner: Scanner, scans: Sequence[SimulatedScan]) -> Dict[str, object]:
    """The surrogate's three numbers (and the long scan's noise) for ``scanner``, averaged over
    full-mode ``scans`` of it."""
    rows = []
    for scan in scans:
        region = noise_region(scan.labels, scan.activity, scanner.spacing)
        rows.append((effective_fwhm(scan), region_noise(scan.short, scan.truth, region)["noise"],
                     noise_fwhm(scan), region_noise(scan.long, scan.truth, region)["noise"]))
    mean = lambda k: float(np.mean([r[k] for r in rows]))  # noqa: E731
    return {"scanner": scanner.id, "subjects": len(rows),
            "surrogate_fwhm_mm": [round(float(np.mean([r[0][k] for r in rows])), 2) for k in (0, 1)],
            "surrogate_short_noise": round(mean(1), 3), "surrogate_noise_fwhm_mm": round(mean(2), 2),
            "long_noise": round(mean(3), 3)}


def main(argv=None) -> None:
    """Measure the scanners of a full-mode cohort folder (its first N subjects); print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohorts", nargs="+", help="folders written by 'petite simulate --mode full' (holding scanner<k>/)")
    parser.add_argument("--subjects", type=int, default=2, help="subjects per scanner (the first ones)")
    parser.add_argument("--out", help="also write the rows and the command to this JSON file")
    args = parser.parse_args(argv)
    rows = []
    for folder in sorted((f for c in args.cohorts for f in Path(c).glob("scanner*")), key=lambda f: f.name):
        record = json.loads((folder / "scanner.json").read_text())
        if record.get("mode") != "full":
            raise SystemExit(f"{folder}: not a full-mode cohort")
        scanner = get_scanner(record["id"])
        subjects = sorted(p for p in folder.iterdir() if p.is_dir())[:args.subjects]
        rows.append(measure_surrogate(scanner, [_scan_from_folder(scanner, s) for s in subjects]))
        rows[-1]["cohort_seed"] = record.get("seed")
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        command = (f"python -m PETITELib.data.simulator.calibration COHORT... --subjects {args.subjects} "
                   f"--out {Path(args.out).name}")
        document = {"command": command, "subjects": args.subjects, "scanners": rows}
        atomic_write_bytes(Path(args.out), (json.dumps(document, indent=1) + "\n").encode(), overwrite=True)


if __name__ == "__main__":
    main()
