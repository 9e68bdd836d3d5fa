"""Measuring what the fast surrogate imitates, on full-physics scans.

For each scanner, from full-mode scans simulated in memory:
- ``fwhm_mm``: the (transaxial, axial) Gaussian FWHM that best turns the activity, times the best
  scale, into the scanner's noise-free image (least squares inside the head);
- ``short_noise``: the short frame's white-matter noise (:func:`.noise.region_noise`);
- ``noise_fwhm_mm``: the correlation FWHM of the short frame's noise, from its lag-one
  autocorrelation rho in-plane (Gaussian-smoothed white noise: rho = exp(-1 / (4 sigma^2))).

Run ``python -m PETITELib.data.simulator.calibration --scanners 1,2,3,4,5 --subjects 2`` and
copy the printed values into the scanners' ``surrogate_*`` fields; the slow test
``test_surrogate_matches_full_mode`` checks they still agree with the full mode.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, Sequence

import numpy as np
from scipy import ndimage, optimize

from ..scanners import Scanner, get_scanner, parse_scanner_list
from .noise import noise_region, region_noise
from .physics import FWHM_TO_SIGMA
from .scan import SimulatedScan, simulate_scan

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


def measure_surrogate(scanner: Scanner, subjects: int = 2, seed: int = 11) -> Dict[str, object]:
    """The surrogate's three numbers for ``scanner``, averaged over ``subjects`` full-mode scans."""
    rows = []
    for index in range(subjects):
        scan = simulate_scan(scanner, subject_index=index, seed=seed, mode="full")
        region = noise_region(scan.labels, scan.activity, scanner.spacing)
        rows.append((effective_fwhm(scan), region_noise(scan.short, scan.truth, region)["noise"],
                     noise_fwhm(scan)))
    return {"scanner": scanner.id,
            "surrogate_fwhm_mm": [round(float(np.mean([r[0][k] for r in rows])), 2) for k in (0, 1)],
            "surrogate_short_noise": round(float(np.mean([r[1] for r in rows])), 3),
            "surrogate_noise_fwhm_mm": round(float(np.mean([r[2] for r in rows])), 2)}


def main(argv=None) -> None:
    """Print the measured surrogate values of the chosen scanners, one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scanners", default="1,2,3,4,5")
    parser.add_argument("--subjects", type=int, default=2)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    for scanner_id in parse_scanner_list(args.scanners):
        print(json.dumps(measure_surrogate(get_scanner(scanner_id), args.subjects, args.seed)), flush=True)


if __name__ == "__main__":
    main()
