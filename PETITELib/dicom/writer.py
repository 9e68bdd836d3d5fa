"""Writing PET DICOM series: slices quantised with a per-slice Rescale Slope, written into a folder
at once (a temporary folder renamed at the end), and the derived series of a reconstruction.

Stored values are signed 16-bit integers with Rescale Intercept 0 and, per slice, Rescale Slope
``max |value| / 32766`` (rounded to a 16-character decimal string first). Reading back
``stored * slope`` therefore differs from the written value by at most half a slope: the
quantisation tolerance is ``max |slice| / 65532`` in each slice (7.6e-6 of the slice's peak).
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import __version__
from ..errors import PetiteError
from .geometry import stack_geometry
from .series import select_series

PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
STORED_MAX = 32766            # largest |stored value| used (int16 holds 32767)
AFFINE_MATCH_MM = 1e-3        # an array written as a derived series must sit on its source's grid
SLICE_NAME = "IM_{:04d}.dcm"
# Attributes of the source that describe its own pixel values, identity or derivation: not copied.
NOT_COPIED = frozenset((0x00080008, 0x00080018, 0x0020000E, 0x00082111, 0x00082112, 0x00080012, 0x00080013,
                        0x00080023, 0x00080033, 0x00280106, 0x00280107, 0x00280108, 0x00280109, 0x00280120,
                        0x00281050, 0x00281051, 0x00281055, 0x00281052, 0x00281053, 0x00281054, 0x00282110,
                        0x00282112, 0x00282114, 0x00880200))


def ds_number(value: float):
    """``value`` as a DICOM decimal string (DS) of at most 16 characters."""
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def quantise(values: np.ndarray) -> tuple:
    """(stored int16 array, slope) of one slice: ``stored * slope`` approximates ``values`` to half
    a slope; slope = max |values| / STORED_MAX as a DS value (1 for an all-zero slice)."""
    values = np.asarray(values, dtype=np.float64)
    peak = float(np.abs(values).max()) if values.size else 0.0
    slope = ds_number(peak / STORED_MAX) if peak > 0 else ds_number(1.0)
    stored = np.clip(np.rint(values / float(slope)), -STORED_MAX - 1, STORED_MAX + 1).astype("<i2")
    return stored, slope


def set_pixels(dataset, plane: np.ndarray) -> None:
    """Store one (rows, columns) float plane in ``dataset``: int16, MONOCHROME2, per-slice rescale."""
    stored, slope = quantise(plane)
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.Rows, dataset.Columns = int(plane.shape[0]), int(plane.shape[1])
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 1
    dataset.RescaleIntercept = ds_number(0.0)
    dataset.RescaleSlope = slope
    dataset.PixelData = np.ascontiguousarray(stored).tobytes()


def new_file_dataset(sop_instance_uid: str):
    """An empty PET Image Storage dataset with its file meta (Explicit VR Little Endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PET_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = PET_IMAGE_STORAGE
    dataset.SOPInstanceUID = sop_instance_uid
    return dataset


def _check_target(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise PetiteError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise PetiteError(f"{out_dir}: already exists and is not empty (use --overwrite to replace it)")
        foreign = next((p for p in sorted(out_dir.iterdir()) if not (p.is_file() and p.suffix == ".dcm")), None)
        if foreign is not None:
            raise PetiteError(f"{out_dir}: holds {foreign.name}, which is not a DICOM slice file; "
                              "remove the folder yourself or choose another one")


def check_series_target(out_dir, overwrite: bool = False) -> Path:
    """Refuse (PetiteError) a series folder that exists, is not empty and ``overwrite`` is off, or
    that holds anything but ``.dcm`` files (which ``overwrite`` would delete). Returns the path."""
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    return out_dir


def write_series_folder(out_dir, datasets: Sequence, overwrite: bool = False) -> List[Path]:
    """Write ``datasets`` as ``OUT_DIR/IM_0001.dcm...`` (in order) all at once: into a temporary
    sibling folder first, which then replaces OUT_DIR. An existing non-empty OUT_DIR is refused
    unless ``overwrite`` (and then only if it holds nothing but ``.dcm`` files)."""
    out_dir = Path(out_dir)
    _check_target(out_dir, overwrite)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        temporary = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=str(out_dir.parent)))
    except OSError as exc:
        raise PetiteError(f"{out_dir}: cannot write ({exc.strerror or type(exc).__name__})") from None
    try:
        for index, dataset in enumerate(datasets):
            dataset.save_as(str(temporary / SLICE_NAME.format(index + 1)), enforce_file_format=True)
        os.chmod(temporary, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(temporary, out_dir)
    except OSError as exc:
        raise PetiteError(f"{out_dir}: cannot write ({exc.strerror or type(exc).__name__}); "
                          "nothing was written") from None
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    return [out_dir / SLICE_NAME.format(i + 1) for i in range(len(datasets))]


def _copy_public(source) -> object:
    """A new dataset holding the source's public attributes except pixel data, overlays and the
    attributes of :data:`NOT_COPIED` (deferred pixel data is never read)."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    for tag in source.keys():
        if tag.is_private or tag.group >= 0x6000 or int(tag) in NOT_COPIED:
            continue
        dataset[tag] = copy.deepcopy(source[tag])
    return dataset


def _values(dataset, keyword: str) -> list:
    """The values of a multi-valued attribute as a list ([] when absent)."""
    value = getattr(dataset, keyword, None)
    if value in (None, ""):
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 3] + "..."


def write_derived_series(source_folder, array: np.ndarray, affine: np.ndarray, out_dir, *, description: str,
                         derivation: str, units: str, series_uid: Optional[str] = None,
                         overwrite: bool = False) -> List[Path]:
    """Write ``array`` (x, y, z) as a derived PET series of the series in ``source_folder``.

    The new series copies the source's patient, study, frame of reference, equipment,
    radiopharmaceutical and per-slice position/orientation attributes (private attributes are
    dropped), and gets new Series and SOP Instance UIDs, Image Type DERIVED\\PRIMARY, Series
    Number + 1000, ``description`` as Series Description (64 characters at most),
    ``derivation`` as Derivation Description, a Source Image Sequence pointing at each source
    slice, Units ``units`` (BQML, GML...) and per-slice quantised pixel data (see the module
    docstring). ``array``/``affine`` must lie on the source's grid (PetiteError otherwise).
    series_uid picks the source series in a folder holding several. Returns the files written.
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    series = select_series(source_folder, series_uid)
    geometry = stack_geometry(series.datasets, series.files)
    array = np.asarray(array, dtype=np.float32)
    if tuple(array.shape) != tuple(geometry.shape):
        raise PetiteError(f"{out_dir}: the volume ({'x'.join(map(str, array.shape))}) is not on the grid of "
                          f"{source_folder} ({'x'.join(map(str, geometry.shape))})")
    difference = float(np.abs(np.asarray(affine, dtype=np.float64) - geometry.affine).max())
    if difference > AFFINE_MATCH_MM:
        raise PetiteError(f"{out_dir}: the volume's affine differs from {source_folder}'s by {difference:.4g} mm")
    new_series = generate_uid()
    now = datetime.now()
    datasets = []
    for k, index in enumerate(geometry.order):
        source = series.datasets[index]
        dataset = new_file_dataset(generate_uid())
        dataset.update(_copy_public(source))
        dataset.SOPClassUID = PET_IMAGE_STORAGE
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
        dataset.SeriesInstanceUID = new_series
        number = getattr(source, "SeriesNumber", None)
        dataset.SeriesNumber = (int(number) if number not in (None, "") else 0) + 1000
        flavour = _values(source, "ImageType")[2:]
        dataset.ImageType = ["DERIVED", "PRIMARY", *flavour]
        dataset.SeriesDescription = _clip(description, 64)
        dataset.DerivationDescription = _clip(derivation, 1024)
        reference = Dataset()
        reference.ReferencedSOPClassUID = str(getattr(source, "SOPClassUID", PET_IMAGE_STORAGE))
        reference.ReferencedSOPInstanceUID = str(source.SOPInstanceUID)
        dataset.SourceImageSequence = [reference]
        dataset.ContentDate = dataset.InstanceCreationDate = now.strftime("%Y%m%d")
        dataset.ContentTime = dataset.InstanceCreationTime = now.strftime("%H%M%S")
        versions = _values(source, "SoftwareVersions")
        dataset.SoftwareVersions = versions + [f"PETITE {__version__}"] * (f"PETITE {__version__}" not in versions)
        dataset.Units = units
        set_pixels(dataset, array[:, :, k].T)
        datasets.append(dataset)
    return write_series_folder(out_dir, datasets, overwrite=overwrite)


def derived_series_text(method: Dict[str, str], source_description: str, source_uid: str,
                        units: str) -> tuple:
    """(Series Description, Derivation Description) of a PETITE reconstruction.

    method: ``{"base": name, "adapter": name or "none"}`` (file stems or shipped names)."""
    adapter = method.get("adapter") or "none"
    description = f"PETITE ({'adapter ' + adapter if adapter != 'none' else 'no adapter'}) long-scan estimate"
    if source_description:
        description += f" of {source_description}"
    derivation = (f"PETITE {__version__} long-scan estimate (sliding-window inference) of series {source_uid}"
                  f"{' (' + source_description + ')' if source_description else ''}; base model "
                  f"{method.get('base')}, adapter {adapter}; units {units}")
    return description, derivation
