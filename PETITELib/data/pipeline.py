"""Training data pipeline: load and normalise subject pairs once, then sample seeded 64^3 crops.

Steps per subject (:func:`prepare_subject`, done once and kept in memory = the cache):
load short and long (nifti_io, affine kept) -> factor from the short scan
(:mod:`PETITELib.data.normalization`) -> both divided by the factor -> zero-padded (the
background value) to at least 64 voxels per axis, padding recorded -> channel first (1, X, Y, Z).
Also kept: the head voxels used to place crops and the evaluation mask of the long scan.

Crops (:class:`CropDataset`): a fraction ``head_fraction`` of the crop centres is drawn inside
the head mask of the long scan grown by SAMPLING_MARGIN_MM along each axis (a box dilation:
cheap, and the exact shape of this margin does not matter), the rest uniformly over the whole
volume (clipped so the crop fits), so the network also sees air and the head's edge. Every
sample's crop depends only on (seed, epoch, index): reproducible with any DataLoader worker count.

Padding and cropping are MONAI transforms (``BorderPad``, ``SpatialCrop``). The random choices
(where each crop goes) are made with numpy Generators seeded per sample rather than with MONAI's
random transforms, whose state lives in each transform object and therefore depends on worker
processes and call order.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage

from ..backbones.base import ROI_SIZE
from ..errors import PetiteError
from ..head_mask import head_mask
from ..metrics import metric_mask
from ..nifti_io import load_volume
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from .cohort import Subject, geometry_problem
from .normalization import denormalize, normalization_factor, normalize

SAMPLING_MARGIN_MM = 10.0
HEAD_FRACTION = 0.5

Padding = Tuple[Tuple[int, int], Tuple[int, int], Tuple[int, int]]


def pad_to_roi(array: np.ndarray, roi: int = ROI_SIZE) -> Tuple[np.ndarray, Padding]:
    """Zero-pad an (x, y, z) array so every axis has at least ``roi`` voxels, split evenly
    before/after. Returns (padded array, padding ((before, after) per axis, in voxels))."""
    from monai.transforms import BorderPad

    padding = tuple((max(roi - n, 0) // 2, max(roi - n, 0) - max(roi - n, 0) // 2) for n in array.shape)
    if not any(before or after for before, after in padding):
        return array, padding
    pad = BorderPad(spatial_border=[v for pair in padding for v in pair], mode="constant")
    padded = pad(torch.from_numpy(np.ascontiguousarray(array))[np.newaxis])
    return np.asarray(padded.as_tensor() if hasattr(padded, "as_tensor") else padded)[0], padding


def unpad(array: np.ndarray, padding: Padding) -> np.ndarray:
    """Remove :func:`pad_to_roi` padding from the last three axes of ``array`` (..., X, Y, Z)."""
    index = tuple(slice(before, array.shape[axis - 3] - after) for axis, (before, after) in enumerate(padding))
    return array[(Ellipsis,) + index]


@dataclass
class NetworkInput:
    """A short scan ready for the network: ``array`` (1, X', Y', Z') float32 normalised and
    padded, the ``factor`` (input units) and the ``padding`` to undo."""

    array: np.ndarray
    factor: float
    padding: Padding


def prepare_input(short: np.ndarray, spacing: Sequence[float], roi: int = ROI_SIZE,
                  name: str = "short scan") -> NetworkInput:
    """Normalise (factor from this scan) and pad an (x, y, z) short scan; spacing in mm."""
    factor = normalization_factor(short, spacing, name=name)
    padded, padding = pad_to_roi(normalize(short, factor), roi)
    return NetworkInput(padded[np.newaxis], factor, padding)


def restore_output(network_output, factor: float, padding: Padding) -> np.ndarray:
    """Network output ((X', Y', Z') with any leading singleton axes, array or tensor) back to
    an (x, y, z) float32 volume in the input's units: padding removed, times ``factor``."""
    if isinstance(network_output, torch.Tensor):
        network_output = network_output.detach().cpu().numpy()
    output = np.asarray(network_output)
    output = output.reshape(output.shape[-3:])
    return denormalize(unpad(output, padding), factor)


@dataclass
class PreparedSubject:
    """One subject in network units (see module docstring). ``short``/``long``: (1, X', Y', Z')
    float32; ``head_voxels``: flat int32 indices into (X', Y', Z') where head-centred crops may
    centre (:func:`sampling_mask` of the long scan);
    ``metric_mask``: (X, Y, Z) evaluation mask of the unpadded long scan; ``spacing`` in mm."""

    subject_id: str
    short: np.ndarray
    long: np.ndarray
    factor: float
    padding: Padding
    affine: np.ndarray
    spacing: Tuple[float, float, float]
    head_voxels: np.ndarray
    metric_mask: np.ndarray

    @property
    def padded_shape(self) -> Tuple[int, int, int]:
        """Spatial shape (X', Y', Z') after padding."""
        return tuple(self.short.shape[1:])


def sampling_mask(long: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Boolean (x, y, z) region for head-centred crops: the head mask of the long scan grown by
    SAMPLING_MARGIN_MM (mm, rounded to voxels) along each axis; spacing in mm."""
    size = [2 * int(round(SAMPLING_MARGIN_MM / float(s))) + 1 for s in spacing]
    return ndimage.maximum_filter(head_mask(long, spacing), size=size)


def prepare_subject(subject: Subject, roi: int = ROI_SIZE) -> PreparedSubject:
    """Load, normalise and pad one subject's short and long scans (raises PetiteError naming
    the file when a scan is unreadable or the pair differs in shape or affine)."""
    short = load_volume(subject.short)
    long = load_volume(subject.long)
    problem = geometry_problem(subject.long, long, subject.short, short)
    if problem:
        raise PetiteError(problem)
    network_input = prepare_input(short.array, short.spacing, roi, name=str(subject.short))
    long_padded, _ = pad_to_roi(normalize(long.array, network_input.factor), roi)
    sampling, _ = pad_to_roi(sampling_mask(long.array, short.spacing), roi)
    return PreparedSubject(
        subject_id=subject.subject_id, short=network_input.array, long=long_padded[np.newaxis],
        factor=network_input.factor, padding=network_input.padding, affine=short.affine,
        spacing=short.spacing, head_voxels=np.flatnonzero(sampling).astype(np.int32),
        metric_mask=metric_mask(long.array, short.spacing))


def prepare_subjects(subjects: Sequence[Subject], roi: int = ROI_SIZE,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> List[PreparedSubject]:
    """:func:`prepare_subject` for each subject, in order: the in-memory cache of a run
    (about 2 x 4 bytes per voxel per subject)."""
    prepared = []
    for index, subject in enumerate(subjects):
        check_cancel(cancel)
        prepared.append(prepare_subject(subject, roi))
        report(progress, "prepare", index + 1, len(subjects), subject.subject_id)
    return prepared


def _split_rank(seed: int, subject_id: str) -> str:
    return hashlib.sha256(f"{seed}:{subject_id}".encode("utf-8")).hexdigest()


def split_subjects(subjects: Sequence[Subject], n_val: Union[int, float], seed: int
                   ) -> Tuple[List[Subject], List[Subject]]:
    """Deterministic (train, validation) split.

    n_val: number of validation subjects (int >= 1) or a fraction in (0, 1) (rounded, at
    least 1). Subjects are ranked by SHA-256 of "seed:subject_id" and the first n_val ranked
    form the validation set, so the split depends only on the seed and the ids (not on their
    order or on the platform). Both parts keep the input order.
    Raises PetiteError when fewer than 2 subjects are given or n_val leaves no training subject.
    """
    count = len(subjects)
    if count < 2:
        raise PetiteError(f"cohort: {count} subject(s); at least 2 are needed for a train/validation split")
    if isinstance(n_val, float):
        if not 0 < n_val < 1:
            raise PetiteError(f"--val-subjects {n_val}: a validation fraction must be between 0 and 1")
        n_val = max(1, int(round(n_val * count)))
    if not 1 <= n_val < count:
        raise PetiteError(f"--val-subjects {n_val}: the cohort has {count} subjects, so between 1 and {count - 1} "
                          "can validate (the rest train)")
    ranked = sorted(subjects, key=lambda s: _split_rank(seed, s.subject_id))
    validation_ids = {s.subject_id for s in ranked[:n_val]}
    return ([s for s in subjects if s.subject_id not in validation_ids],
            [s for s in subjects if s.subject_id in validation_ids])


class CropDataset(torch.utils.data.Dataset):
    """Random ROI^3 crops of prepared subjects: ``{"short": (1, R, R, R), "long": (1, R, R, R)}``
    float32 tensors in network units (R = ``roi``).

    ``samples_per_subject`` crops per subject per epoch; sample ``i`` comes from subject
    ``i % len(subjects)``. Call :meth:`set_epoch` before each epoch to draw new crops
    (use num_workers=0 or non-persistent workers so the epoch reaches them).
    """

    def __init__(self, subjects: Sequence[PreparedSubject], samples_per_subject: int = 4,
                 seed: int = 0, head_fraction: float = HEAD_FRACTION, roi: int = ROI_SIZE) -> None:
        if not subjects:
            raise PetiteError("training set: no subjects to sample crops from")
        if not 0.0 <= head_fraction <= 1.0:
            raise PetiteError(f"head fraction {head_fraction} must be between 0 and 1")
        self.subjects = list(subjects)
        self.samples_per_subject = int(samples_per_subject)
        self.seed = int(seed)
        self.head_fraction = float(head_fraction)
        self.roi = int(roi)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the crops of ``epoch`` (same seed and epoch -> same crops)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.subjects) * self.samples_per_subject

    def crop_centre(self, index: int) -> Tuple[int, Tuple[int, int, int]]:
        """(subject position, drawn crop centre voxel (x, y, z) in the padded volume) of sample
        ``index``: inside the dilated head with probability ``head_fraction``, else uniform."""
        subject_index = index % len(self.subjects)
        subject = self.subjects[subject_index]
        shape = subject.padded_shape
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if subject.head_voxels.size and rng.random() < self.head_fraction:
            centre = np.unravel_index(subject.head_voxels[rng.integers(subject.head_voxels.size)], shape)
        else:
            centre = rng.integers(0, shape)
        return subject_index, tuple(int(v) for v in centre)

    def crop_origin(self, index: int) -> Tuple[int, Tuple[int, int, int]]:
        """(subject position, crop start voxel (x, y, z)): the centre moved so the crop fits."""
        subject_index, centre = self.crop_centre(index)
        shape = np.array(self.subjects[subject_index].padded_shape)
        start = np.clip(np.array(centre) - self.roi // 2, 0, shape - self.roi)
        return subject_index, tuple(int(v) for v in start)

    def __getitem__(self, index: int) -> dict:
        from monai.transforms import SpatialCrop

        subject_index, start = self.crop_origin(index)
        subject = self.subjects[subject_index]
        crop = SpatialCrop(roi_start=start, roi_end=[v + self.roi for v in start])
        return {key: _plain_tensor(crop(torch.from_numpy(getattr(subject, key)))) for key in ("short", "long")}


def _plain_tensor(tensor) -> torch.Tensor:
    """A contiguous plain torch.Tensor (MONAI transforms may return a MetaTensor)."""
    return (tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor).contiguous()
