"""Body-weight SUV (g/mL) of a PET series from its DICOM tags.

    SUV = C * W / D(t)      C: activity concentration (Bq/mL, Units BQML), W: Patient's Weight
                            in grams, D(t): Radionuclide Total Dose (Bq) decayed from the
                            injection to the time the images are decay-corrected to:
    D(t) = D * 2 ** (-t / T)   T: Radionuclide Half Life (s);
    t = Series Date/Time - Radiopharmaceutical Start DateTime   for Decay Correction START
        (DICOM: the images are decay-corrected to the acquisition start, which the PET Series
        module dates with Series Date and Series Time),
    t = 0                                                      for Decay Correction ADMIN.

A series that lacks what SUV needs is refused with a message naming the missing tag. Times
without a time zone are local times of the scanner; when only Radiopharmaceutical Start Time
(0018,1072) is given it is dated with the Series Date (the day before when that would put the
injection after the series start, i.e. an injection before midnight).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

from ..errors import PetiteError
from .tags import tag_name


@dataclass(frozen=True)
class SuvInputs:
    """What body-weight SUV needs, read from a series: weight (kg), dose (Bq), half-life (s) and the
    seconds from the injection to the time the images are decay-corrected to."""

    weight_kg: float
    dose_bq: float
    half_life_s: float
    decay_seconds: float
    decay_correction: str

    @property
    def factor(self) -> float:
        """SUV per Bq/mL (g/mL per Bq/mL): :func:`body_weight_suv_factor` of these values."""
        return body_weight_suv_factor(self.weight_kg, self.dose_bq, self.half_life_s, self.decay_seconds)


def body_weight_suv_factor(weight_kg: float, dose_bq: float, half_life_s: float, decay_seconds: float) -> float:
    """SUV per Bq/mL: ``1000 * weight_kg / (dose_bq * 2 ** (-decay_seconds / half_life_s))``."""
    return 1000.0 * weight_kg / (dose_bq * math.pow(2.0, -decay_seconds / half_life_s))


def _missing(path: Path, keyword: str, why: str = "SUV needs it") -> PetiteError:
    return PetiteError(f"{path}: missing {tag_name(keyword)}: {why}")


def _positive(dataset, keyword: str, path: Path, what: str) -> float:
    value = getattr(dataset, keyword, None)
    if value in (None, ""):
        raise _missing(path, keyword, f"SUV needs the {what}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PetiteError(f"{path}: {tag_name(keyword)} is not a number: {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise PetiteError(f"{path}: {tag_name(keyword)} is {number:g}: SUV needs a positive {what}")
    return number


def _naive(moment: datetime) -> datetime:
    return moment.replace(tzinfo=None) if moment.tzinfo is not None else moment


def _parse(kind: str, value, path: Path, keyword: str):
    from pydicom.valuerep import DA, DT, TM

    try:
        parsed = {"DA": DA, "TM": TM, "DT": DT}[kind](str(value).strip())
    except Exception:
        parsed = None
    if parsed is None:
        raise PetiteError(f"{path}: {tag_name(keyword)} is not a valid {kind} value: {str(value)!r}")
    return parsed


def _series_start(dataset, path: Path) -> datetime:
    for keyword in ("SeriesDate", "SeriesTime"):
        if getattr(dataset, keyword, None) in (None, ""):
            raise _missing(path, keyword, "SUV needs the series start (the images are decay-corrected to it)")
    date = _parse("DA", dataset.SeriesDate, path, "SeriesDate")
    time = _parse("TM", dataset.SeriesTime, path, "SeriesTime")
    return datetime.combine(date, time.replace(tzinfo=None))


def _injection(item, series_start: datetime, path: Path) -> datetime:
    value = getattr(item, "RadiopharmaceuticalStartDateTime", None)
    if value not in (None, ""):
        return _naive(_parse("DT", value, path, "RadiopharmaceuticalStartDateTime"))
    value = getattr(item, "RadiopharmaceuticalStartTime", None)
    if value in (None, ""):
        raise _missing(path, "RadiopharmaceuticalStartDateTime",
                       "SUV needs the injection time (or Radiopharmaceutical Start Time (0018,1072))")
    time = _parse("TM", value, path, "RadiopharmaceuticalStartTime").replace(tzinfo=None)
    injection = datetime.combine(series_start.date(), time)
    return injection - timedelta(days=1) if injection > series_start else injection


def suv_inputs(dataset, path="DICOM series") -> SuvInputs:
    """The SUV inputs of one PET image ``dataset`` (Units BQML assumed by the caller).

    Raises PetiteError naming ``path`` and the missing or invalid tag: Patient's Weight,
    Radiopharmaceutical Information Sequence, Radionuclide Total Dose, Radionuclide Half Life,
    the injection time, Series Date/Time, Decay Correction (START or ADMIN; NONE is refused).
    """
    path = Path(path)
    weight = _positive(dataset, "PatientWeight", path, "body weight (kg)")
    sequence = getattr(dataset, "RadiopharmaceuticalInformationSequence", None)
    if not sequence:
        raise _missing(path, "RadiopharmaceuticalInformationSequence", "SUV needs the injected dose and time")
    item = sequence[0]
    dose = _positive(item, "RadionuclideTotalDose", path, "injected dose (Bq)")
    half_life = _positive(item, "RadionuclideHalfLife", path, "half-life (s)")
    correction = str(getattr(dataset, "DecayCorrection", "") or "").upper()
    if not correction:
        raise _missing(path, "DecayCorrection", "SUV needs to know the time the images are decay-corrected to")
    if correction == "ADMIN":
        return SuvInputs(weight, dose, half_life, 0.0, correction)
    if correction != "START":
        raise PetiteError(f"{path}: {tag_name('DecayCorrection')} is {correction}: SUV needs images "
                          "decay-corrected to the series start (START) or to the injection (ADMIN)")
    start = _series_start(dataset, path)
    injection = _injection(item, start, path)
    seconds = (start - injection).total_seconds()
    if seconds < 0:
        raise PetiteError(f"{path}: the injection ({injection.isoformat()}) is after the series start "
                          f"({start.isoformat()}): check Radiopharmaceutical Start DateTime (0018,1078) "
                          "and Series Time (0008,0031)")
    return SuvInputs(weight, dose, half_life, seconds, correction)


def suv_factor(dataset, path="DICOM series") -> float:
    """SUV per Bq/mL of a series with Units BQML (see :func:`suv_inputs` for the errors)."""
    return suv_inputs(dataset, path).factor


def philips_suv_scale(dataset, path) -> Optional[float]:
    """Philips' SUV Scale Factor (7053,1000) of a CNTS image (SUV per stored value after rescale),
    or None when the private tag is absent."""
    element = dataset.get((0x7053, 0x1000))
    if element is None or element.value in (None, b"", ""):
        return None
    value = element.value
    try:
        number = float(value.decode("ascii").strip("\x00 ") if isinstance(value, bytes) else value)
    except (ValueError, UnicodeDecodeError):
        raise PetiteError(f"{path}: Philips SUV Scale Factor (7053,1000) is not a number: {value!r}") from None
    if not (math.isfinite(number) and number > 0):
        raise PetiteError(f"{path}: Philips SUV Scale Factor (7053,1000) is {number:g}: it must be positive")
    return number
