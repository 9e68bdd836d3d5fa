"""The five PET scanners of the PETITE paper (Table 4) and the physics the simulator gives them.

Matrix, voxel spacing, manufacturer and institution are the paper's. Everything else is an
assumption of PETITE's simulator: each scanner is modelled on the scanner *family* ADNI used at
that voxel size (HRRT, Biograph PET/CT, Allegro, ECAT HR+), with that family's detector,
attenuation correction, scatter/randoms handling and reconstruction (``docs/simulator.md`` lists
every difference with its source). All of it is written into every simulated cohort's
``scanner.json`` (see :meth:`Scanner.to_json`).

Volumes on a scanner's grid are (x, y, z) arrays of shape ``matrix``; :meth:`Scanner.affine`
gives their 4x4 voxel-to-RAS affine in mm, with the field-of-view centre at the origin.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import PetiteError

RECONSTRUCTIONS = ("op-osem", "psf-osem", "ramla-blob", "fore-aw-osem")
ATTENUATION_CORRECTIONS = ("ct", "transmission")
RANDOMS_CORRECTIONS = ("smoothed-delayed", "subtracted-delayed")


@dataclass(frozen=True)
class Detector:
    """The detector ring as the simulator sees it (efficiencies, sensitivity, gaps).

    axial_fov_mm: the physical axial field of view; the matrix's slices are centred in it.
    max_ring_difference: fraction of the axial FOV over which 3D coincidences are accepted; it
        sets the triangular/trapezoidal axial sensitivity profile of a 3D acquisition (1.0: every
        ring pair, the centre plane sees the most).
    crystal_cv: spread of crystal efficiencies (Gamma coefficient of variation).
    block_crystals, block_edge_loss: crystals per detector block along the (virtual) ring and
        the efficiency lost at a block's edge crystals (0: no block pattern, e.g. Anger-logic
        GSO with a continuous light guide).
    block_planes: image planes per axial block ring (0: none); the planes at a block ring's edges
        lose ``block_edge_loss`` too.
    head_gap_fraction: fraction of crystals missing in the gaps between flat detector heads
        (0: a continuous ring).
    """

    axial_fov_mm: float
    max_ring_difference: float
    crystal_cv: float
    block_crystals: int
    block_edge_loss: float
    block_planes: int
    head_gap_fraction: float = 0.0
    heads: int = 0


@dataclass(frozen=True)
class Corrections:
    """How the scanner's software estimates the data corrections it applies.

    attenuation: ``ct`` (CT-derived mu-map: bilinear scaling, smoothed to PET resolution) or
        ``transmission`` (a rotating rod / point-source transmission scan, reconstructed,
        smoothed and segmented into tissue classes).
    transmission_counts: mean blank-scan counts per sinogram bin of the transmission scan.
    transmission_mu_bias: relative error of the reconstructed soft-tissue mu before
        segmentation (singles-mode Cs-137 transmission: scatter lowers it, energy scaling
        from 662 keV leaves a residual).
    mu_smoothing_mm: Gaussian FWHM applied to the mu-map before it is used.
    segmentation_classes: tissue values (1/mm) the segmented mu-map may take (ascending; empty:
        no segmentation, the smoothed map is used as it is).
    bone_mu_error: relative error of the bone mu in a CT-derived map (bilinear scaling).
    randoms: ``smoothed-delayed`` (variance-reduced delayed-window estimate in the model, as
        ordinary-Poisson reconstructions use) or ``subtracted-delayed`` (delayed coincidences
        subtracted on line, the data are no longer Poisson).
    scatter_axial_smoothing: planes over which tail-fit scatter scales are smoothed (1: every
        plane scaled on its own, as ECAT-era software did).
    normalisation_crystal_error: relative error of each crystal's measured efficiency.
    normalisation_block_residual: fraction of the block-profile pattern the normalisation
        leaves uncorrected (count-rate dependent block effects).
    calibration: the scanner's Bq/mL scale relative to the true activity (cross-calibration).
    """

    attenuation: str
    transmission_counts: float
    transmission_mu_bias: float
    mu_smoothing_mm: float
    segmentation_classes: Tuple[float, ...]
    bone_mu_error: float
    randoms: str
    scatter_axial_smoothing: int
    normalisation_crystal_error: float
    normalisation_block_residual: float
    calibration: float


@dataclass(frozen=True)
class Reconstruction:
    """The scanner's reconstruction.

    algorithm: ``op-osem`` (ordinary-Poisson OSEM, randoms and scatter in the model),
        ``psf-osem`` (the same with the PSF in the system model: resolution recovery with edge
        overshoot), ``ramla-blob`` (row-action maximum likelihood with Kaiser-Bessel blob basis
        functions) or ``fore-aw-osem`` (Fourier rebinning, then 2D attenuation-weighted OSEM on
        randoms- and scatter-precorrected data).
    iterations, subsets: the schedule (RAMLA: passes, one view per subset).
    psf_model_fwhm_mm: (transaxial, axial) FWHM of the PSF in the system model (psf-osem).
    blob_radius_voxels, blob_alpha: Kaiser-Bessel blob (order 2) support radius in voxels and
        taper (ramla-blob). relaxation: RAMLA's initial relaxation parameter.
    fore_axial_blur_mm: added axial FWHM at 100 mm from the axis from Fourier rebinning (it
        grows linearly with the radius).
    postfilter_fwhm_mm: isotropic Gaussian post-filter FWHM (0: none).
    """

    algorithm: str
    iterations: int
    subsets: int
    postfilter_fwhm_mm: float
    psf_model_fwhm_mm: Optional[Tuple[float, float]] = None
    blob_radius_voxels: float = 0.0
    blob_alpha: float = 0.0
    relaxation: float = 0.0
    fore_axial_blur_mm: float = 0.0


@dataclass(frozen=True)
class Scanner:
    """One scanner: geometry from Table 4 plus the simulator's physics for its family.

    id: 1..5 as in Table 4.
    matrix: voxels along (x, y, z). spacing: voxel size in mm along (x, y, z).
    family: the scanner family it is modelled on (``model_like``: a longer description).
    psf_fwhm_mm: system resolution (transaxial, axial), Gaussian FWHM in mm (NEMA-like values).
    count_scale: detected true coincidences per decay in the slice-wise 2D model at the centre
        of the axial FOV (set so that the short frame's white-matter noise is ADNI-like, not a
        physical 3D sensitivity).
    scatter_fraction, randoms_fraction: shares of all prompt counts (0..1).
    n_angles: sinogram views over 180 degrees (the radial bins are the matrix's x size at the
        x spacing, so the sinogram covers the field of view).
    detector, corrections, reconstruction: see :class:`Detector`, :class:`Corrections`,
        :class:`Reconstruction`.
    surrogate_fwhm_mm, surrogate_short_noise, surrogate_noise_fwhm_mm: what the fast
        image-domain surrogate imitates, measured on full-mode scans
        (:mod:`PETITELib.data.simulator.calibration`): the noise-free image's effective
        (transaxial, axial) blur of the activity, the short frame's white-matter noise
        (fraction of the mean) and the noise's correlation FWHM (mm).
    """

    id: int
    matrix: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    manufacturer: str
    institution: str
    family: str
    model_like: str
    psf_fwhm_mm: Tuple[float, float]
    count_scale: float
    scatter_fraction: float
    randoms_fraction: float
    n_angles: int
    detector: Detector
    corrections: Corrections
    reconstruction: Reconstruction
    surrogate_fwhm_mm: Tuple[float, float]
    surrogate_short_noise: float
    surrogate_noise_fwhm_mm: float

    @property
    def name(self) -> str:
        """Folder and display name, e.g. ``"scanner1"``."""
        return f"scanner{self.id}"

    @property
    def fov_mm(self) -> Tuple[float, float, float]:
        """Extent of the image grid in mm along (x, y, z): matrix times spacing."""
        return tuple(n * s for n, s in zip(self.matrix, self.spacing))

    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine (mm): diagonal spacing, field-of-view centre at (0, 0, 0)."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = -(np.asarray(self.matrix) - 1) / 2.0 * np.asarray(self.spacing)
        return affine

    def to_json(self) -> Dict[str, object]:
        """All fields as plain JSON-ready values (tuples become lists, nested records dicts)."""
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


MU_TISSUE, MU_BONE = 0.0096, 0.0130  # segmentation class values (1/mm) at 511 keV

SCANNERS: Dict[int, Scanner] = {
    1: Scanner(
        1, (192, 192, 136), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California", "HRRT",
        "HRRT-like dedicated brain PET (LSO/LYSO, eight flat heads), OP-OSEM without resolution model",
        psf_fwhm_mm=(2.6, 2.6), count_scale=1.6e-2, scatter_fraction=0.35, randoms_fraction=0.30,
        n_angles=96,
        detector=Detector(axial_fov_mm=252.0, max_ring_difference=0.65, crystal_cv=0.08,
                          block_crystals=8, block_edge_loss=0.10, block_planes=16,
                          head_gap_fraction=0.06, heads=8),
        corrections=Corrections(attenuation="transmission", transmission_counts=400.0,
                                transmission_mu_bias=-0.03, mu_smoothing_mm=4.0,
                                segmentation_classes=(0.0, MU_TISSUE, MU_BONE), bone_mu_error=0.0,
                                randoms="smoothed-delayed", scatter_axial_smoothing=9, normalisation_crystal_error=0.01,
                                normalisation_block_residual=0.05, calibration=1.00),
        reconstruction=Reconstruction("op-osem", iterations=6, subsets=16, postfilter_fwhm_mm=3.0),
        surrogate_fwhm_mm=(5.38, 3.98), surrogate_short_noise=0.381, surrogate_noise_fwhm_mm=3.09),
    2: Scanner(
        2, (192, 192, 128), (1.21875, 1.21875, 1.21875), "Siemens", "Univ of California", "HRRT",
        "HRRT-like dedicated brain PET, OP-OSEM with a resolution (PSF) model",
        psf_fwhm_mm=(2.8, 2.8), count_scale=1.4e-2, scatter_fraction=0.35, randoms_fraction=0.25,
        n_angles=96,
        detector=Detector(axial_fov_mm=252.0, max_ring_difference=0.65, crystal_cv=0.08,
                          block_crystals=8, block_edge_loss=0.10, block_planes=16,
                          head_gap_fraction=0.06, heads=8),
        corrections=Corrections(attenuation="transmission", transmission_counts=400.0,
                                transmission_mu_bias=-0.03, mu_smoothing_mm=4.0,
                                segmentation_classes=(0.0, MU_TISSUE, MU_BONE), bone_mu_error=0.0,
                                randoms="smoothed-delayed", scatter_axial_smoothing=9, normalisation_crystal_error=0.01,
                                normalisation_block_residual=0.05, calibration=1.04),
        reconstruction=Reconstruction("psf-osem", iterations=10, subsets=16, postfilter_fwhm_mm=3.0,
                                      psf_model_fwhm_mm=(2.8, 2.8)),
        surrogate_fwhm_mm=(4.31, 3.25), surrogate_short_noise=0.353, surrogate_noise_fwhm_mm=3.61),
    3: Scanner(
        3, (224, 224, 81), (1.01821, 1.01821, 2.02699), "Siemens", "Univ of California", "Biograph",
        "Biograph-like whole-body PET/CT (LSO blocks), CT attenuation, PSF-modelled OSEM",
        psf_fwhm_mm=(4.5, 4.8), count_scale=7.0e-3, scatter_fraction=0.32, randoms_fraction=0.25,
        n_angles=112,
        detector=Detector(axial_fov_mm=162.0, max_ring_difference=0.95, crystal_cv=0.06,
                          block_crystals=13, block_edge_loss=0.06, block_planes=0),
        corrections=Corrections(attenuation="ct", transmission_counts=0.0, transmission_mu_bias=0.0,
                                mu_smoothing_mm=5.0, segmentation_classes=(), bone_mu_error=0.05,
                                randoms="smoothed-delayed", scatter_axial_smoothing=9, normalisation_crystal_error=0.01,
                                normalisation_block_residual=0.05, calibration=0.97),
        reconstruction=Reconstruction("psf-osem", iterations=3, subsets=21, postfilter_fwhm_mm=3.0,
                                      psf_model_fwhm_mm=(4.5, 4.8)),
        surrogate_fwhm_mm=(6.97, 4.73), surrogate_short_noise=0.185, surrogate_noise_fwhm_mm=5.21),
    4: Scanner(
        4, (128, 128, 90), (2.0, 2.0, 2.0), "Philips Healthcare", "OHSU", "Allegro",
        "Allegro-like GSO PET (Anger-logic, Cs-137 transmission), 3D-RAMLA with blob basis functions",
        psf_fwhm_mm=(5.0, 5.5), count_scale=5.0e-3, scatter_fraction=0.35, randoms_fraction=0.20,
        n_angles=64,
        detector=Detector(axial_fov_mm=180.0, max_ring_difference=1.0, crystal_cv=0.05,
                          block_crystals=0, block_edge_loss=0.0, block_planes=0),
        corrections=Corrections(attenuation="transmission", transmission_counts=2000.0,
                                transmission_mu_bias=-0.04, mu_smoothing_mm=8.0,
                                segmentation_classes=(0.0, MU_TISSUE), bone_mu_error=0.0,
                                randoms="smoothed-delayed", scatter_axial_smoothing=9, normalisation_crystal_error=0.01,
                                normalisation_block_residual=0.0, calibration=1.06),
        reconstruction=Reconstruction("ramla-blob", iterations=2, subsets=64, postfilter_fwhm_mm=0.0,
                                      blob_radius_voxels=2.0, blob_alpha=10.4, relaxation=0.5),
        surrogate_fwhm_mm=(7.82, 6.11), surrogate_short_noise=0.3, surrogate_noise_fwhm_mm=3.88),
    5: Scanner(
        5, (128, 128, 63), (2.05941, 2.05941, 2.425), "Siemens", "UCSD", "ECAT HR+",
        "ECAT HR+-like BGO PET (Ge-68 rod transmission), FORE + attenuation-weighted 2D OSEM",
        psf_fwhm_mm=(4.5, 4.2), count_scale=1.5e-2, scatter_fraction=0.35, randoms_fraction=0.20,
        n_angles=64,
        detector=Detector(axial_fov_mm=155.0, max_ring_difference=0.70, crystal_cv=0.07,
                          block_crystals=8, block_edge_loss=0.15, block_planes=16),
        corrections=Corrections(attenuation="transmission", transmission_counts=150.0,
                                transmission_mu_bias=0.0, mu_smoothing_mm=6.0,
                                segmentation_classes=(0.0, MU_TISSUE), bone_mu_error=0.0,
                                randoms="subtracted-delayed", scatter_axial_smoothing=1, normalisation_crystal_error=0.015,
                                normalisation_block_residual=0.15, calibration=0.95),
        reconstruction=Reconstruction("fore-aw-osem", iterations=4, subsets=16, postfilter_fwhm_mm=4.0,
                                      fore_axial_blur_mm=1.5),
        surrogate_fwhm_mm=(6.62, 5.73), surrogate_short_noise=0.274, surrogate_noise_fwhm_mm=3.88),
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
