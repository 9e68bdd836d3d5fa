"""Finding the DICOM series in a folder (headers only) and choosing the one to read.

A folder is searched recursively; files that are not DICOM (no ``DICM`` preamble: text, JSON,
NIfTI...) and DICOMDIR index files are skipped. Images are grouped by Series Instance UID.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError

# Pixel data and other large values are read only when used (pydicom reopens the file).
DEFER_SIZE = "4 KB"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # the SOP Class of a DICOMDIR file
MAX_LISTED = 5  # series named in a "several series" message


@dataclass
class Series:
    """One series of a folder: its UID, its files and their datasets (pixel data deferred)."""

    uid: str
    files: List[Path] = field(default_factory=list)
    datasets: list = field(default_factory=list)

    @property
    def modality(self) -> str:
        """Modality (0008,0060) of the first image ("" when absent)."""
        return str(getattr(self.datasets[0], "Modality", "") or "")

    def describe(self) -> str:
        """A short description: UID, modality, Series Description and image count."""
        first = self.datasets[0]
        description = str(getattr(first, "SeriesDescription", "") or "")
        number = getattr(first, "SeriesNumber", None)
        label = ", ".join(part for part in (self.modality or "no modality",
                                            f"#{number}" if number not in (None, "") else "",
                                            f"'{description}'" if description else "",
                                            f"{len(self.files)} images") if part)
        return f"{self.uid} ({label})"


def _dicom_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _read_header(path: Path):
    """The dataset of ``path`` (pixel data deferred), or None when the file is not DICOM."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path), defer_size=DEFER_SIZE)
    except InvalidDicomError:
        return None
    except Exception as exc:  # pydicom raises many types for truncated or corrupt files
        raise PetiteError(f"{path}: unreadable DICOM file ({type(exc).__name__}: {exc})") from None


def find_series(folder) -> Dict[str, Series]:
    """Every image series in ``folder`` (recursive), keyed by Series Instance UID, files sorted by name.

    Raises PetiteError when the folder does not exist, holds no DICOM image, or a DICOM file
    cannot be read or has no Series Instance UID (0020,000E).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PetiteError(f"{folder}: not a folder (expected a folder holding one DICOM series)")
    found: Dict[str, Series] = {}
    for path in _dicom_files(folder):
        dataset = _read_header(path)
        if dataset is None:
            continue
        meta = getattr(dataset, "file_meta", None)
        if str(getattr(meta, "MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
            continue
        uid = str(getattr(dataset, "SeriesInstanceUID", "") or "")
        if not uid:
            raise PetiteError(f"{path}: DICOM file without a Series Instance UID (0020,000E)")
        series = found.setdefault(uid, Series(uid))
        series.files.append(path)
        series.datasets.append(dataset)
    if not found:
        raise PetiteError(f"{folder}: no DICOM files found (expected a folder holding one PET series)")
    return found


def select_series(folder, series_uid: Optional[str] = None) -> Series:
    """The one series of ``folder``, or the one with ``series_uid`` (``--series``).

    A folder with several series is refused with a list of them (one line) unless
    ``series_uid`` picks one; an unknown ``series_uid`` is refused with the same list.
    """
    found = find_series(folder)

    def listing() -> str:
        names = [found[uid].describe() for uid in sorted(found)]
        more = f"; and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
        return "; ".join(names[:MAX_LISTED]) + more

    if series_uid:
        if series_uid not in found:
            raise PetiteError(f"{folder}: --series {series_uid}: no such series here (found: {listing()})")
        return found[series_uid]
    if len(found) > 1:
        raise PetiteError(f"{folder}: holds {len(found)} series, pick one with --series UID: {listing()}")
    return next(iter(found.values()))
