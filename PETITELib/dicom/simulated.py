"""Simulated volumes written as realistic PET DICOM series (tests and ``petite simulate --format dicom``).

Each series carries what a scanner's static FDG brain series carries: PET Image Storage
single-frame slices, signed 16-bit pixels with a per-slice Rescale Slope, Units BQML, Decay
Correction START (to the Series Time, the acquisition start), Corrected Image, Frame Reference
Time, Actual Frame Duration and Decay Factor, Patient's Weight, and a Radiopharmaceutical
Information Sequence (F-18 FDG, Radionuclide Total Dose, Half Life, Start DateTime). The
geometry comes from the volume's affine (oblique and sheared slices included): Image Orientation
from its first two columns, Pixel Spacing from their lengths, one Image Position per slice.

UIDs are derived from what is written (``uid_key`` and the slice index), so the same inputs give
byte-identical files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import PetiteError
from .geometry import LPS_TO_RAS
from .writer import ds_number, new_file_dataset, set_pixels, write_series_folder

F18_HALF_LIFE_S = 109.77 * 60.0
F18_POSITRON_FRACTION = 0.9673
STUDY_DATE = datetime(2024, 1, 15, 9, 30, 0)    # injection time of every simulated study
CORRECTED_IMAGE = ["DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM"]
# DICOM roles of the simulator's scans: (series number, frame start and duration in s, description)
SIMULATED_SERIES = {"short": (1, 0.0, 300.0, "FDG brain 0-5 min (short scan)"),
                    "long": (2, 0.0, 1800.0, "FDG brain 0-30 min (long scan, mean of 6 frames)")}


@dataclass(frozen=True)
class Acquisition:
    """What a simulated series records of its acquisition: body weight (kg), injected dose (Bq)
    and time, the time from injection to the series start (s), frame duration (s), half-life (s)."""

    weight_kg: float
    dose_bq: float
    injection: datetime
    uptake_seconds: float
    frame_seconds: float
    half_life_s: float = F18_HALF_LIFE_S

    @property
    def series_start(self) -> datetime:
        """Series Date/Time: the acquisition start, which the images are decay-corrected to."""
        return self.injection + timedelta(seconds=self.uptake_seconds)


def slice_positions(affine: np.ndarray, depth: int) -> tuple:
    """(row cosine, column cosine, Pixel Spacing [row, column], Image Positions (depth, 3)) in LPS
    of a volume with voxel-to-RAS ``affine``; PetiteError when its in-plane axes are not orthogonal."""
    lps = np.linalg.inv(LPS_TO_RAS) @ np.asarray(affine, dtype=np.float64)
    first, second = lps[:3, 0], lps[:3, 1]
    spacing = (float(np.linalg.norm(second)), float(np.linalg.norm(first)))
    if min(spacing) <= 0 or abs(float(first @ second)) > 1e-6 * spacing[0] * spacing[1]:
        raise PetiteError("DICOM series: the volume's first two axes must be orthogonal (a DICOM slice is a "
                          "rectangle of pixels)")
    positions = lps[:3, 3][np.newaxis] + np.arange(depth)[:, np.newaxis] * lps[:3, 2][np.newaxis]
    return first / spacing[1], second / spacing[0], spacing, positions


def _decay_factor(acquisition: Acquisition) -> tuple:
    """(Decay Factor, Frame Reference Time in ms) of a frame decay-corrected to its start: the mean
    correction over the frame and the time at which the activity equals its frame average."""
    rate = math.log(2.0) / acquisition.half_life_s
    lt = rate * acquisition.frame_seconds
    factor = lt / (1.0 - math.exp(-lt))
    return factor, 1000.0 * math.log(factor) / rate


def _code(value: str, scheme: str, meaning: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _radiopharmaceutical(acquisition: Acquisition):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.Radiopharmaceutical = "Fluorodeoxyglucose"
    item.RadiopharmaceuticalStartTime = acquisition.injection.strftime("%H%M%S.%f")
    item.RadiopharmaceuticalStartDateTime = acquisition.injection.strftime("%Y%m%d%H%M%S.%f")
    item.RadionuclideTotalDose = ds_number(acquisition.dose_bq)
    item.RadionuclideHalfLife = ds_number(acquisition.half_life_s)
    item.RadionuclidePositronFraction = ds_number(F18_POSITRON_FRACTION)
    item.RadionuclideCodeSequence = [_code("C-111A1", "SRT", "^18^Fluorine")]
    item.RadiopharmaceuticalCodeSequence = [_code("C-B1031", "SRT", "Fluorodeoxyglucose F^18^")]
    return item


def write_simulated_series(folder, array: np.ndarray, affine: np.ndarray, acquisition: Acquisition, *,
                           patient_id: str, uid_key: str, series_number: int, description: str,
                           equipment: Optional[dict] = None, overwrite: bool = False) -> List[Path]:
    """Write an (x, y, z) Bq/mL volume with voxel-to-RAS ``affine`` (mm) as a PET series in ``folder``.

    uid_key: text shared by the series of one study (e.g. ``"seed0/scanner4/sub-001"``): the
    Study Instance UID and Frame of Reference UID derive from it, the Series and SOP Instance
    UIDs from it, ``series_number`` and the slice index. equipment: Manufacturer,
    ManufacturerModelName and InstitutionName (default: PETITE simulator). Returns the files.
    """
    from pydicom.uid import generate_uid

    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3:
        raise PetiteError(f"{folder}: a DICOM series needs a 3D volume, got shape {array.shape}")
    row, column, spacing, positions = slice_positions(affine, array.shape[2])
    normal = np.cross(row, column)
    thickness = abs(float((positions[1] - positions[0]) @ normal)) if array.shape[2] > 1 else 1.0
    decay_factor, reference_ms = _decay_factor(acquisition)
    start = acquisition.series_start
    study_uid = generate_uid(entropy_srcs=[uid_key, "study"])
    frame_uid = generate_uid(entropy_srcs=[uid_key, "frame-of-reference"])
    series_uid = generate_uid(entropy_srcs=[uid_key, "series", str(series_number)])
    equipment = {"Manufacturer": "PETITE", "ManufacturerModelName": "simulator",
                 "InstitutionName": "PETITE simulation", **(equipment or {})}
    datasets = []
    for k in range(array.shape[2]):
        dataset = new_file_dataset(generate_uid(entropy_srcs=[uid_key, "image", str(series_number), str(k)]))
        dataset.SpecificCharacterSet = "ISO_IR 100"
        dataset.ImageType = ["ORIGINAL", "PRIMARY"]
        dataset.StudyDate = dataset.SeriesDate = dataset.AcquisitionDate = dataset.ContentDate = \
            start.strftime("%Y%m%d")
        dataset.StudyTime = acquisition.injection.strftime("%H%M%S")
        dataset.SeriesTime = dataset.AcquisitionTime = dataset.ContentTime = start.strftime("%H%M%S.%f")
        dataset.Modality = "PT"
        for keyword, value in equipment.items():
            setattr(dataset, keyword, str(value)[:64])
        dataset.SoftwareVersions = f"PETITE simulator {__version__}"
        dataset.StudyDescription = "FDG brain PET (simulated)"
        dataset.SeriesDescription = description[:64]
        dataset.PatientName = f"SIMULATED^{patient_id}"
        dataset.PatientID = patient_id
        dataset.PatientBirthDate = ""
        dataset.PatientSex = "O"
        dataset.PatientWeight = ds_number(round(acquisition.weight_kg, 3))
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.StudyID, dataset.AccessionNumber, dataset.ReferringPhysicianName = "1", "", ""
        dataset.SeriesNumber, dataset.InstanceNumber = series_number, k + 1
        dataset.FrameOfReferenceUID, dataset.PositionReferenceIndicator = frame_uid, ""
        dataset.ImagePositionPatient = [ds_number(v) for v in positions[k]]
        dataset.ImageOrientationPatient = [ds_number(v) for v in (*row, *column)]
        dataset.PixelSpacing = [ds_number(v) for v in spacing]
        dataset.SliceThickness = ds_number(thickness)
        dataset.SeriesType = ["STATIC", "IMAGE"]
        dataset.Units = "BQML"
        dataset.CountsSource = "EMISSION"
        dataset.NumberOfSlices = array.shape[2]
        dataset.ImageIndex = k + 1
        dataset.CorrectedImage = CORRECTED_IMAGE
        dataset.DecayCorrection = "START"
        dataset.DecayFactor = ds_number(decay_factor)
        dataset.FrameReferenceTime = ds_number(round(reference_ms, 3))
        dataset.ActualFrameDuration = int(round(acquisition.frame_seconds * 1000))
        dataset.ReconstructionMethod = "OSEM (simulated)"
        dataset.RadiopharmaceuticalInformationSequence = [_radiopharmaceutical(acquisition)]
        set_pixels(dataset, array[:, :, k].T)
        datasets.append(dataset)
    return write_series_folder(folder, datasets, overwrite=overwrite)


def _subject_records(record: dict, folder: Path) -> dict:
    subjects = {entry.get("subject"): entry for entry in record.get("subjects", [])}
    if not subjects:
        raise PetiteError(f"{folder / 'scanner.json'}: no 'subjects' records (not written by petite simulate?)")
    return subjects


def convert_simulated_cohort(folder, roles: Sequence[str] = ("short", "long")) -> List[Path]:
    """Turn a simulated cohort's ``<subject>/short.nii.gz`` and ``long.nii.gz`` into DICOM series
    folders ``<subject>/short/`` and ``<subject>/long/`` (the NIfTI files are removed once their
    series is written; truth, activity and labels stay NIfTI). Dose, body weight, uptake time
    and half-life come from the cohort's ``scanner.json``. Returns the series folders written."""
    from ..nifti_io import load_volume

    folder = Path(folder)
    record = json.loads((folder / "scanner.json").read_text(encoding="utf-8"))
    subjects = _subject_records(record, folder)
    protocol = record.get("protocol", {})
    uptake = 60.0 * float(protocol.get("uptake_time_min", 30.0))
    half_life = 60.0 * float(protocol.get("half_life_min", F18_HALF_LIFE_S / 60.0))
    equipment = {"Manufacturer": record.get("manufacturer", "PETITE"),
                 "ManufacturerModelName": f"{record.get('family', 'simulated')} (simulated)",
                 "InstitutionName": record.get("institution", "PETITE simulation")}
    written = []
    for name, entry in sorted(subjects.items()):
        for role in roles:
            number, _, seconds, description = SIMULATED_SERIES[role]
            source = folder / name / f"{role}.nii.gz"
            volume = load_volume(source)
            acquisition = Acquisition(float(entry["body_weight_kg"]), 1e6 * float(entry["injected_dose_mbq"]),
                                      STUDY_DATE, uptake, seconds, half_life)
            written.append(folder / name / role)
            write_simulated_series(folder / name / role, volume.array, volume.affine, acquisition,
                                   patient_id=name, uid_key=f"seed{record.get('seed')}/{folder.name}/{name}",
                                   series_number=number, description=description, equipment=equipment)
            source.unlink()
    return written
