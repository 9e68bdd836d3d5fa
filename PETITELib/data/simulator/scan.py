"""Simulating scans in memory: one subject on one or more scanners, in full or fast mode.

Random streams (numpy ``SeedSequence`` entropy, so results never depend on the order or the
process in which scans run):
- subject (anatomy, uptake, AD-like pattern): ``(seed, 1, subject_index)``; the same subject
  appears on every scanner (a "travelling" cohort);
- scan (pose, injected dose, Poisson counts or surrogate noise):
  ``(seed, 2, subject_index, scanner_id)``;
- detector efficiencies (a property of the scanner within one cohort): ``(seed, 3, scanner_id)``.

"truth" is what the scanner would show without noise: its reconstruction of noise-free data
(resolution, reconstruction, corrections and calibration of that scanner), the reference no
network can beat by denoising alone. "activity" is the true activity at the acquisition start
(Bq/mL) averaged over each scanner voxel, without blur. short, long and truth are
decay-corrected to the acquisition start, so all four share units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Sequence

import numpy as np

from ...errors import PetiteError
from ...progress import CancelToken, check_cancel
from ..scanners import Scanner, get_scanner
from .anatomy import SubjectPhantom, build_subject, sample_subject
from .attenuation import attenuation_factors, estimated_mu_map
from .corrections import FrameCorrections
from .detectors import detector_efficiencies
from .noise import noise_region, region_noise
from .physics import UPTAKE_TIME_S, acquisition_model, decay_constant_per_s, frame_decay_seconds
from .reconstruction import Reconstructor, postfilter
from .placement import Pose, resample, sample_pose, scanner_to_subject
from .projector import scanner_geometry
from .surrogate import surrogate_scans
from .template import load_head_template

MODES = ("full", "fast")
TEMPLATE_VOXEL_MM = {"full": 1, "fast": 2}
FINE_FACTOR = 2  # the forward model runs on a grid 2x finer than the scanner's along every axis
DOSE_MBQ_MEAN, DOSE_MBQ_SD, DOSE_MBQ_RANGE = 185.0, 18.5, (150.0, 220.0)
_SUBJECT, _SCAN, _DETECTOR = 1, 2, 3
_SLAB_SLICES = 8


@dataclass(frozen=True)
class SimulatedScan:
    """One simulated scan on a scanner's grid.

    short, long: (x, y, z) float32 in Bq/mL (decay-corrected to the acquisition start); truth: the
    scanner's noise-free image (its resolution, reconstruction and corrections, no noise);
    activity: the true activity averaged over each voxel (no blur, no calibration); labels: (x, y, z) uint8 region labels (template.LABELS); affine: 4x4 voxel-to-RAS mm;
    info: JSON-ready record (subject parameters, pose, dose, measured noise, counts).
    """

    scanner: Scanner
    subject: str
    short: np.ndarray
    long: np.ndarray
    truth: np.ndarray
    activity: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    info: Dict[str, object]


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def check_seed(seed) -> int:
    """``seed`` as a non-negative int; PetiteError naming ``--seed`` otherwise."""
    try:
        value = int(seed)
    except (TypeError, ValueError):
        raise PetiteError(f"--seed: expected a non-negative integer, got {seed!r}") from None
    if value < 0 or value != seed:
        raise PetiteError(f"--seed: expected a non-negative integer, got {seed!r}")
    return value


def _fine_activity(phantom: SubjectPhantom, scanner: Scanner, transform: np.ndarray) -> np.ndarray:
    """Subject SUV on the fine grid, averaged over each scanner slice: (F*nx, F*ny, nz) float32.

    Samples F x F x F points per scanner voxel (F = FINE_FACTOR), trilinear, and averages the F
    axial samples of each slice (the slice's thickness is integrated, in-plane stays fine).
    """
    nx, ny, nz = scanner.matrix
    step = np.asarray(scanner.spacing) / FINE_FACTOR
    fine = np.empty((nx * FINE_FACTOR, ny * FINE_FACTOR, nz), dtype=np.float32)
    for start in range(0, nz, _SLAB_SLICES):
        stop = min(start + _SLAB_SLICES, nz)
        affine = np.diag([*step, 1.0])  # fine voxel centres around the slab's first scanner voxel
        affine[:3, 3] = (scanner.affine() @ [0.0, 0.0, start, 1.0])[:3] - (FINE_FACTOR - 1) * step / 2.0
        samples = resample(phantom.suv, phantom.affine, affine,
                           (nx * FINE_FACTOR, ny * FINE_FACTOR, (stop - start) * FINE_FACTOR),
                           transform, order=1)
        fine[:, :, start:stop] = samples.reshape(samples.shape[0], samples.shape[1], stop - start,
                                                 FINE_FACTOR).mean(axis=3)
    return fine


def _block_mean_xy(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average factor x factor in-plane blocks of an (x, y, z) array."""
    nx, ny, nz = volume.shape
    return volume.reshape(nx // factor, factor, ny // factor, factor, nz).mean(axis=(1, 3))


def _full_images(scanner: Scanner, phantom: SubjectPhantom, transform: np.ndarray,
                 bq_per_suv: float, rng: np.random.Generator, detector_rng_seed: tuple,
                 cancel: Optional[CancelToken]):
    """Full physics: short, long, truth (noise-free image), activity (Bq/mL, scanner grid), stats.

    The truth is the scanner's reconstruction of the first frame's *expected* data through the
    same correction chain: what the scanner would show without noise (every frame's expected
    data give the same image, as the model scales with the decay integrals).
    """
    geometry = scanner_geometry(scanner)
    fine_geometry = scanner_geometry(scanner, FINE_FACTOR)
    fine = _fine_activity(phantom, scanner, transform) * np.float32(bq_per_suv)
    activity = _block_mean_xy(fine, FINE_FACTOR)
    mu = resample(phantom.mu, phantom.affine, scanner.affine(), scanner.matrix, transform, order=1)
    check_cancel(cancel)
    efficiencies = detector_efficiencies(_rng(*detector_rng_seed), scanner, geometry)
    model = acquisition_model(scanner, fine_geometry, fine_geometry.pack(fine),
                              attenuation_factors(geometry, geometry.pack(mu)), efficiencies.true)
    del fine
    frames = model.draw_frames(rng, delayed=scanner.corrections.randoms == "subtracted-delayed")
    estimated_attenuation = attenuation_factors(geometry, geometry.pack(estimated_mu_map(scanner, geometry, mu, rng)))
    corrections = FrameCorrections(scanner, geometry, model, efficiencies.measured, estimated_attenuation)
    per_view = scanner.count_scale / scanner.n_angles
    volume_ml = geometry.pixel_mm ** 2 * scanner.spacing[2] / 1000.0
    factor = efficiencies.measured * estimated_attenuation * np.float32(per_view * volume_ml)
    reconstructor = Reconstructor(scanner, geometry, factor)
    check_cancel(cancel)
    decay = frame_decay_seconds()
    expected = (model.expected_prompts(0).astype(np.float32), model.expected_delayed(0).astype(np.float32))
    images = []
    for index, (prompts, delayed) in enumerate([*frames, expected]):
        frame = index if index < len(frames) else 0
        prepared = corrections.prepare(prompts, delayed, frame)
        stack = reconstructor.reconstruct(prepared.data, float(decay[frame]), prepared.background, cancel)
        image = postfilter(geometry.unpack(stack), scanner.reconstruction.postfilter_fwhm_mm, scanner.spacing)
        images.append((image * np.float32(scanner.corrections.calibration)).astype(np.float32))
    prompts = float(frames[0][0].sum(dtype=np.float64))
    trues = float(model.trues.sum(dtype=np.float64) * decay[0])
    stats = {"frame1_prompts_millions": round(prompts / 1e6, 4),
             "frame1_true_fraction": round(trues / prompts, 4)}
    long = np.mean(images[:-1], axis=0).astype(np.float32)
    return images[0], long, images[-1], activity, stats


def _simulate_on_scanner(scanner: Scanner, phantom: SubjectPhantom, subject_index: int, seed: int,
                         mode: str, cancel: Optional[CancelToken]) -> SimulatedScan:
    rng = _rng(seed, _SCAN, subject_index, scanner.id)
    pose: Pose = sample_pose(rng)
    dose_mbq = float(np.clip(rng.normal(DOSE_MBQ_MEAN, DOSE_MBQ_SD), *DOSE_MBQ_RANGE))
    weight_g = phantom.parameters.body_weight_kg * 1000.0
    bq_per_suv = dose_mbq * 1e6 / weight_g * float(np.exp(-decay_constant_per_s() * UPTAKE_TIME_S))
    transform = scanner_to_subject(pose, phantom.anchor_mm, phantom.head_top_mm, scanner.fov_mm[2])
    labels = resample(phantom.labels, phantom.affine, scanner.affine(), scanner.matrix, transform, order=0)
    stats: Dict[str, float] = {}
    if mode == "full":
        short, long, truth, activity, stats = _full_images(scanner, phantom, transform, bq_per_suv, rng,
                                                           (seed, _DETECTOR, scanner.id), cancel)
    else:
        activity = resample(phantom.suv, phantom.affine, scanner.affine(), scanner.matrix, transform,
                            order=1) * np.float32(bq_per_suv)
        region = noise_region(labels, activity, scanner.spacing)
        short, long, truth = surrogate_scans(scanner, activity, region, rng)
    region = noise_region(labels, activity, scanner.spacing)
    noise = {name: region_noise(image, truth, region) for name, image in (("short", short), ("long", long))}
    info = {"subject": phantom.parameters.name, "mode": mode, **phantom.parameters.to_json(),
            "pose": pose.to_json(), "injected_dose_mbq": round(dose_mbq, 3),
            "bq_per_ml_per_suv": round(bq_per_suv, 3),
            "white_matter": {**noise, "activity_cov": region_noise(activity, activity, region)["cov"],
                             "region_voxels": int(region.sum())},
            **stats}
    return SimulatedScan(scanner, phantom.parameters.name, short, long, truth, activity, labels,
                         scanner.affine(), info)


def check_mode(mode: str) -> str:
    """``mode`` if it is ``"full"`` or ``"fast"``; PetiteError naming ``--mode`` otherwise."""
    if mode not in MODES:
        raise PetiteError(f"--mode: expected one of {', '.join(MODES)}, got {mode!r}")
    return mode


def simulate_subject(subject_index: int, scanners: Sequence, seed: int, mode: str = "full",
                     cancel: Optional[CancelToken] = None) -> Iterator[SimulatedScan]:
    """Yield one :class:`SimulatedScan` per scanner for the subject with 0-based ``subject_index``.

    scanners: ids (1..5) or :class:`Scanner` objects. The subject's anatomy is built once and
    shared by all scanners. mode: ``"full"`` (physics + OSEM) or ``"fast"`` (image surrogate).
    """
    seed, mode = check_seed(seed), check_mode(mode)
    scanners = [s if isinstance(s, Scanner) else get_scanner(s) for s in scanners]
    parameters = sample_subject(_rng(seed, _SUBJECT, subject_index), subject_index)
    phantom = build_subject(load_head_template(TEMPLATE_VOXEL_MM[mode]), parameters)
    for scanner in scanners:
        check_cancel(cancel)
        yield _simulate_on_scanner(scanner, phantom, subject_index, seed, mode, cancel)


def simulate_scan(scanner, subject_index: int = 0, seed: int = 0, mode: str = "fast",
                  cancel: Optional[CancelToken] = None) -> SimulatedScan:
    """Simulate one subject on one scanner in memory (for tests, demos and the console).

    scanner: id 1..5 or a :class:`Scanner`. Returns short, long and truth (x, y, z) float32 in
    Bq/mL with labels and the scanner's 4x4 affine (mm). Identical inputs give identical arrays.
    """
    return next(simulate_subject(subject_index, [scanner], seed, mode, cancel))
