"""Reading one PET DICOM series as an (x, y, z) float32 volume with its 4x4 RAS affine (mm).

Values are ``stored * Rescale Slope + Rescale Intercept`` of each slice, in the series' Units
(BQML: Bq/mL, CNTS: counts, GML: SUV in g/mL), or in SUV (g/mL) with ``units="suv"``:
BQML times the body-weight SUV factor (:mod:`.suv`), CNTS times Philips' per-slice SUV Scale
Factor (7053,1000), GML as it is. Compressed transfer syntaxes are decoded when pydicom has a
decoder for them with the packages installed; the others are refused by name.

Every command reads input volumes with :func:`PETITELib.nifti_io.load_volume`, which hands a
folder to :func:`load_dicom_volume`; which series of a folder to read, and in which units, is
set for a block of code with :func:`reading` (the CLI's ``--series`` and ``--units``).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import PetiteError
from ..nifti_io import Volume
from .geometry import stack_geometry
from .series import Series, select_series
from .suv import philips_suv_scale, suv_factor
from .tags import tag_name

UNITS = ("native", "suv")
UNIT_NAMES = {"BQML": "Bq/mL", "GML": "SUV (g/mL)", "CNTS": "counts"}
PET_MODALITY = "PT"
ENHANCED_PET_STORAGE = "1.2.840.10008.5.1.4.1.1.130"


@dataclass(frozen=True)
class ReadOptions:
    """How DICOM folders are read: ``series`` maps a folder (resolved path) to the Series
    Instance UID to pick in it; ``units`` is ``native`` (the series' Units) or ``suv``."""

    series: Mapping[str, str] = field(default_factory=dict)
    units: str = "native"


_OPTIONS: ContextVar[ReadOptions] = ContextVar("petite_dicom_read_options", default=ReadOptions())


@contextmanager
def reading(series: Optional[Mapping] = None, units: str = "native") -> Iterator[ReadOptions]:
    """Within this block, DICOM folders read by :func:`PETITELib.nifti_io.load_volume` use
    ``series`` ({folder: Series Instance UID}, e.g. from ``--series``) and ``units``
    (``native`` or ``suv``). Contexts nest; the previous options come back on exit."""
    if units not in UNITS:
        raise PetiteError(f"--units: expected one of {', '.join(UNITS)}, got {units!r}")
    chosen = {str(Path(folder).resolve()): str(uid) for folder, uid in (series or {}).items() if uid}
    token = _OPTIONS.set(ReadOptions(chosen, units))
    try:
        yield _OPTIONS.get()
    finally:
        _OPTIONS.reset(token)


def read_options() -> ReadOptions:
    """The options :func:`reading` set for the current block (defaults outside any)."""
    return _OPTIONS.get()


@dataclass
class DicomVolume(Volume):
    """A volume read from a DICOM series: ``units`` is the DICOM Units code of ``array`` (BQML,
    CNTS, GML...; GML after an SUV conversion), ``files`` the slice files in volume order (slice
    k is ``files[k]``), ``suv_factor`` the series' SUV per Bq/mL when it was converted from BQML,
    ``description`` its Series Description."""

    units: str = ""
    series_uid: str = ""
    files: Tuple[Path, ...] = ()
    suv_factor: Optional[float] = None
    description: str = ""

    @property
    def units_name(self) -> str:
        """Human-readable units, e.g. ``Bq/mL``."""
        return UNIT_NAMES.get(self.units, self.units or "unknown units")


def is_dicom_folder(path) -> bool:
    """Whether ``path`` names a folder (which :func:`PETITELib.nifti_io.load_volume` reads as DICOM)."""
    return Path(path).is_dir()


def _check_images(series: Series) -> None:
    for dataset, path in zip(series.datasets, series.files):
        modality = str(getattr(dataset, "Modality", "") or "")
        if modality != PET_MODALITY:
            raise PetiteError(f"{path}: modality {modality or 'missing'}, not PET ({PET_MODALITY}): "
                              "PETITE reads PET series only")
        frames = getattr(dataset, "NumberOfFrames", None)
        if str(getattr(dataset, "SOPClassUID", "")) == ENHANCED_PET_STORAGE or (frames not in (None, "")
                                                                                  and int(frames) > 1):
            raise PetiteError(f"{path}: a multi-frame (Enhanced PET) image; PETITE reads single-frame "
                              "PET Image Storage series: export the series as single-frame images")
        samples = int(getattr(dataset, "SamplesPerPixel", 1) or 1)
        if samples != 1:
            raise PetiteError(f"{path}: {samples} samples per pixel; a PET image has one")


def _check_slice_count(series: Series, order: List[int]) -> None:
    """Refuse a series with fewer images than its Number of Slices (0054,0081) says."""
    first = series.datasets[0]
    expected = getattr(first, "NumberOfSlices", None)
    if expected in (None, "") or int(expected) == len(order):
        return
    expected = int(expected)
    indices = {int(d.ImageIndex) for d in series.datasets if getattr(d, "ImageIndex", None) not in (None, "")}
    missing = sorted(set(range(1, expected + 1)) - indices) if indices else []
    which = (f" (Image Index {', '.join(str(i) for i in missing[:10])}{' ...' if len(missing) > 10 else ''})"
             if missing else "")
    folder = series.files[0].parent
    raise PetiteError(f"{folder}: {len(order)} images where {tag_name('NumberOfSlices')} says {expected}: "
                      f"slices missing{which}")


def _decoder_problem(dataset) -> Optional[str]:
    """Why the pixel data of ``dataset`` cannot be decoded here, or None."""
    from pydicom.pixels import get_decoder

    syntax = getattr(getattr(dataset, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None or not syntax.is_compressed:
        return None
    name = f"transfer syntax {syntax.name} ({syntax})"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        return f"{name} cannot be decoded by pydicom"
    if decoder.is_available:
        return None
    needs = "; ".join(str(need) for need in decoder.missing_dependencies)
    return f"{name} cannot be decoded with the packages installed (one of: {needs})"


def _slice_values(dataset, path: Path) -> np.ndarray:
    """One slice as float64 (rows, columns): stored values times Rescale Slope plus Intercept."""
    problem = _decoder_problem(dataset)
    if problem:
        raise PetiteError(f"{path}: {problem}")
    try:
        pixels = dataset.pixel_array
    except Exception as exc:  # pydicom raises many types for truncated or malformed pixel data
        raise PetiteError(f"{path}: cannot decode the pixel data ({type(exc).__name__}: {exc})") from None
    return pixels.astype(np.float64) * _number(dataset, "RescaleSlope", 1.0) + _number(dataset, "RescaleIntercept", 0.0)


def _number(dataset, keyword: str, default: float) -> float:
    value = getattr(dataset, keyword, None)
    return default if value in (None, "") else float(value)


def _units(series: Series) -> str:
    units = {str(getattr(d, "Units", "") or "").upper() for d in series.datasets}
    if len(units) > 1:
        raise PetiteError(f"{series.files[0].parent}: slices of one series in different {tag_name('Units')}: "
                          f"{', '.join(sorted(units))}")
    return units.pop()


def _suv_scales(series: Series, order: List[int], units: str) -> Tuple[List[float], Optional[float]]:
    """Per-slice factors to SUV (in volume order) and the series' SUV factor for BQML."""
    first, first_path = series.datasets[0], series.files[0]
    if units == "GML":
        return [1.0] * len(order), None
    if units == "BQML":
        factor = suv_factor(first, first_path)
        return [factor] * len(order), factor
    if units == "CNTS":
        scales = []
        for index in order:
            scale = philips_suv_scale(series.datasets[index], series.files[index])
            if scale is None:
                raise PetiteError(f"{series.files[index]}: Units CNTS without Philips' SUV Scale Factor "
                                  "(7053,1000): SUV cannot be computed from counts")
            scales.append(scale)
        return scales, None
    raise PetiteError(f"{first_path}: {tag_name('Units')} is {units or 'missing'}: SUV needs BQML (Bq/mL), "
                      "GML, or CNTS with Philips' SUV Scale Factor (7053,1000)")


def read_series(folder, series_uid: Optional[str] = None, units: str = "native",
                check_finite: bool = True) -> DicomVolume:
    """Read the PET series of ``folder`` (or the one with ``series_uid``) as a :class:`DicomVolume`.

    units: ``native`` (the series' Units) or ``suv`` (body-weight SUV, g/mL). Raises PetiteError
    (one line naming the file) for: several series without ``series_uid``, a modality other
    than PT, multi-frame images, inconsistent/duplicate/missing slices (geometry, Number of
    Slices), undecodable compressed pixel data, different Units within the series, missing SUV
    tags with ``units="suv"``, and NaN/Inf values (unless ``check_finite`` is False).
    """
    if units not in UNITS:
        raise PetiteError(f"--units: expected one of {', '.join(UNITS)}, got {units!r}")
    series = select_series(folder, series_uid)
    _check_images(series)
    geometry = stack_geometry(series.datasets, series.files)
    _check_slice_count(series, geometry.order)
    series_units = _units(series)
    scales, factor = (_suv_scales(series, geometry.order, series_units) if units == "suv"
                      else ([1.0] * len(geometry.order), None))
    array = np.empty(geometry.shape, dtype=np.float32)
    for k, (index, scale) in enumerate(zip(geometry.order, scales)):
        values = _slice_values(series.datasets[index], series.files[index])
        array[:, :, k] = (values * scale).T  # (rows, columns) -> (i = column, j = row)
    if check_finite and not np.isfinite(array).all():
        raise PetiteError(f"{Path(folder)}: contains NaN or Inf values")
    files = tuple(series.files[i] for i in geometry.order)
    return DicomVolume(array, geometry.affine, units="GML" if units == "suv" else series_units,
                       series_uid=series.uid, files=files, suv_factor=factor,
                       description=str(getattr(series.datasets[0], "SeriesDescription", "") or ""))


def load_dicom_volume(folder, check_finite: bool = True) -> DicomVolume:
    """:func:`read_series` of ``folder`` with the series and units set by :func:`reading`
    (what :func:`PETITELib.nifti_io.load_volume` calls for a folder)."""
    options = read_options()
    return read_series(folder, options.series.get(str(Path(folder).resolve())), options.units, check_finite)



def series_grid(folder) -> Tuple[Tuple[int, int, int], Tuple[float, float, float]]:
    """(shape, voxel size in mm) of the series of ``folder`` from its headers alone (no pixel data
    decoded; series chosen as by :func:`load_dicom_volume`); the same one-line PetiteErrors for
    several series, another modality or inconsistent slices."""
    series = select_series(folder, read_options().series.get(str(Path(folder).resolve())))
    _check_images(series)
    geometry = stack_geometry(series.datasets, series.files)
    _check_slice_count(series, geometry.order)
    return tuple(geometry.shape), tuple(float(v) for v in np.linalg.norm(geometry.affine[:3, :3], axis=0))
