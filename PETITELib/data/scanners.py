"""The five PET scanners of the PETITE paper (Table 4) and the physics the simulator assumes for them.

Matrix, voxel spacing, manufacturer and institution are the paper's. Everything else
(``model_like`` and the physics fields) is an assumption of PETITE's simulator, chosen to
resemble scanners of that era and voxel size; it is written into every simulated cohort's
``scanner.json`` (see :meth:`Scanner.to_json`).

Volumes on a scanner's grid are (x, y, z) arrays of shape ``matrix``; :meth:`Scanner.affine`
gives their 4x4 voxel-to-RAS affine in mm, with the field-of-view centre at the origin.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..errors import PetiteError


@dataclass(frozen=True)
class Scanner:
    """One scanner: geometry from Table 4 plus the simulator's assumed physics.

    id: 1..5 as in Table 4.
    matrix: voxels along (x, y, z). spacing: voxel size in mm along (x, y, z).
    psf_fwhm_mm: system resolution (transaxial, axial), Gaussian FWHM in mm.
    count_scale: detected true coincidences per decay in the slice-wise 2D model (tuned so the
        short frame's white-matter noise is ADNI-like, not a physical 3D sensitivity).
    scatter_fraction, randoms_fraction: shares of all prompt counts (0..1).
    efficiency_cv: spread (coefficient of variation) of detector-pair efficiencies.
    n_angles: sinogram views over 180 degrees (the radial bins are the matrix's x size at the
        x spacing, so the sinogram covers the field of view).
    osem_iterations, osem_subsets: reconstruction schedule.
    postfilter_fwhm_mm: isotropic Gaussian post-filter FWHM in mm (0: none).
    surrogate_short_noise: the short frame's white-matter noise (a fraction of the mean) that the
        fast image-domain surrogate imitates: the full mode's measured value, see
        the README (Simulated data).
    """

    id: int
    matrix: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    manufacturer: str
    institution: str
    model_like: str
    psf_fwhm_mm: Tuple[float, float]
    count_scale: float
    scatter_fraction: float
    randoms_fraction: float
    efficiency_cv: float
    n_angles: int
    osem_iterations: int
    osem_subsets: int
    postfilter_fwhm_mm: float
    surrogate_short_noise: float

    @property
    def name(self) -> str:
        """Folder and display name, e.g. ``"scanner1"``."""
        return f"scanner{self.id}"

    @property
    def fov_mm(self) -> Tuple[float, float, float]:
        """Field-of-view extent in mm along (x, y, z): matrix times spacing."""
        return tuple(n * s for n, s in zip(self.matrix, self.spacing))

    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine (mm): diagonal spacing, field-of-view centre at (0, 0, 0)."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = -(np.asarray(self.matrix) - 1) / 2.0 * np.asarray(self.spacing)
        return affine

    def to_json(self) -> Dict[str, object]:
        """All fields as plain JSON-ready values (tuples become lists)."""
        return {key: (list(value) if isinstance(value, tuple) else value)
                for key, value in asdict(self).items()}


SCANNERS: Dict[int, Scanner] = {
    1: Scanner(1, (192, 192, 136), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California",
               "HRRT-like dedicated brain PET", psf_fwhm_mm=(2.6, 2.6), count_scale=1.6e-2,
               scatter_fraction=0.35, randoms_fraction=0.30, efficiency_cv=0.08, n_angles=96,
               osem_iterations=3, osem_subsets=12, postfilter_fwhm_mm=2.5, surrogate_short_noise=0.145),
    2: Scanner(2, (192, 192, 128), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California",
               "HRRT-like dedicated brain PET", psf_fwhm_mm=(2.8, 2.8), count_scale=1.4e-2,
               scatter_fraction=0.35, randoms_fraction=0.25, efficiency_cv=0.08, n_angles=96,
               osem_iterations=3, osem_subsets=16, postfilter_fwhm_mm=3.0, surrogate_short_noise=0.17),
    3: Scanner(3, (224, 224, 81), (1.01821, 1.01821, 2.02699), "Siemens", "Univ of California",
               "Biograph-like whole-body PET/CT", psf_fwhm_mm=(4.5, 4.8), count_scale=7.0e-3,
               scatter_fraction=0.32, randoms_fraction=0.25, efficiency_cv=0.06, n_angles=112,
               osem_iterations=2, osem_subsets=14, postfilter_fwhm_mm=4.0, surrogate_short_noise=0.11),
    4: Scanner(4, (128, 128, 90), (2.0, 2.0, 2.0), "Philips Healthcare", "OHSU",
               "Allegro/Gemini-like GSO PET", psf_fwhm_mm=(5.0, 5.5), count_scale=5.0e-3,
               scatter_fraction=0.30, randoms_fraction=0.20, efficiency_cv=0.06, n_angles=64,
               osem_iterations=3, osem_subsets=8, postfilter_fwhm_mm=4.0, surrogate_short_noise=0.12),
    5: Scanner(5, (128, 128, 63), (2.05941, 2.05941, 2.425), "Siemens", "UCSD",
               "ECAT HR+-like BGO PET", psf_fwhm_mm=(4.5, 4.2), count_scale=1.5e-2,
               scatter_fraction=0.35, randoms_fraction=0.20, efficiency_cv=0.07, n_angles=64,
               osem_iterations=4, osem_subsets=16, postfilter_fwhm_mm=4.0, surrogate_short_noise=0.14),
}


def get_scanner(scanner_id) -> Scanner:
    """The :class:`Scanner` with Table 4 number ``scanner_id`` (1..5); PetiteError otherwise."""
    try:
        return SCANNERS[int(scanner_id)]
    except (KeyError, TypeError, ValueError):
        raise PetiteError(f"unknown scanner {scanner_id!r}: choose from "
                          f"{', '.join(str(k) for k in SCANNERS)}") from None


def parse_scanner_list(text: str) -> Tuple[int, ...]:
    """Parse a comma-separated list such as ``"1,2,5"`` into scanner ids (sorted, unique).

    Raises PetiteError naming ``--scanners`` for empty lists or unknown ids.
    """
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts:
        raise PetiteError("--scanners: give at least one scanner id, e.g. 1,2,3,4,5")
    ids = []
    for part in parts:
        if not part.isdigit() or int(part) not in SCANNERS:
            raise PetiteError(f"--scanners: unknown scanner {part!r} (choose from "
                              f"{', '.join(str(k) for k in SCANNERS)})")
        ids.append(int(part))
    return tuple(sorted(set(ids)))


def match_scanner(shape: Sequence[int], spacing: Iterable[float],
                  tolerance_mm: float = 1e-3) -> Optional[Scanner]:
    """The scanner whose matrix equals ``shape`` and spacing (mm) is within ``tolerance_mm``, or None."""
    shape = tuple(int(n) for n in shape)
    spacing = np.asarray(list(spacing), dtype=float)
    for scanner in SCANNERS.values():
        if scanner.matrix == shape and np.allclose(scanner.spacing, spacing, atol=tolerance_mm, rtol=0):
            return scanner
    return None
