"""Writing small PET DICOM series for the tests (PETITELib.dicom.simulated) and spoiling them."""
from datetime import datetime
from pathlib import Path

import numpy as np

from PETITELib.dicom.simulated import Acquisition, write_simulated_series

INJECTION = datetime(2024, 1, 15, 10, 0, 0)
WEIGHT_KG, DOSE_BQ, UPTAKE_S = 70.0, 370e6, 3600.0


def acquisition(frame_seconds: float = 300.0) -> Acquisition:
    """70 kg, 370 MBq injected at 10:00, series start 11:00 (one hour of uptake)."""
    return Acquisition(WEIGHT_KG, DOSE_BQ, INJECTION, UPTAKE_S, frame_seconds)


def write_series(folder: Path, array: np.ndarray, affine: np.ndarray, *, number: int = 1, key: str = "test",
                 frame_seconds: float = 300.0, description: str = "test series") -> Path:
    """Write ``array`` as a PET series (Bq/mL) into ``folder``; returns ``folder``."""
    write_simulated_series(folder, array, affine, acquisition(frame_seconds), patient_id="patient-1", uid_key=key,
                           series_number=number, description=description)
    return Path(folder)


def edit_file(path: Path, **changes) -> None:
    """Set (value) or delete (None) attributes of one DICOM file, in place."""
    import pydicom

    dataset = pydicom.dcmread(str(path))
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(str(path), enforce_file_format=True)


def oblique_affine(spacing=(2.0, 2.5, 3.0), origin=(-20.0, 31.5, -12.25), angles=(0.3, -0.2)) -> np.ndarray:
    """A voxel-to-RAS affine rotated about z then x, anisotropic spacing (positive determinant)."""
    a, b = angles
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rx @ rz @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def assert_within_quantisation(read: np.ndarray, written: np.ndarray) -> None:
    """``read`` equals ``written`` to the quantisation of the stored integers: per slice, half a
    Rescale Slope (max |slice| / (2 * 32766)) plus the float32 rounding of the value read."""
    from PETITELib.dicom.writer import STORED_MAX

    written = np.asarray(written, dtype=np.float64)
    peaks = np.abs(written).reshape(-1, written.shape[2]).max(axis=0)
    error = np.abs(np.asarray(read, dtype=np.float64) - written).reshape(-1, written.shape[2]).max(axis=0)
    tolerance = peaks / (2 * STORED_MAX) + 2.0 ** -23 * peaks
    assert (error <= tolerance).all(), f"largest error / tolerance: {(error / np.maximum(tolerance, 1e-30)).max()}"
