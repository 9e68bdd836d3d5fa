"""Reading and writing PET volumes as NIfTI, with atomic writes and no silent overwrites.

Arrays are (x, y, z) float32 in the file's units (Bq/mL, SUV or counts); the affine is the
4x4 voxel-to-RAS(mm) matrix nibabel reports (qform/sform).

:func:`load_volume` is where every command reads an input volume: given a folder instead of a
file it reads the PET DICOM series in it (:mod:`PETITELib.dicom`, same Volume contract).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np

from .errors import PetiteError


@dataclass
class Volume:
    """A PET volume: ``array`` (x, y, z) float32 and ``affine`` 4x4 float64 in mm."""

    array: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple:
        """Voxel size in mm along x, y, z (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def _header_voxel_size_problem(img) -> str:
    """Why a NIfTI header's voxel size (pixdim) cannot be trusted, or "" when it can or is unused.
    Without an sform the affine comes from pixdim, and nibabel silently turns a 0 there into 1 mm
    when it loads the header: so the header is read again as stored (``check=False``)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    if not isinstance(img.header, nib.Nifti1Header):  # (NIfTI-2 too) other formats: the affine is all there is
        return ""
    try:
        holder = img.file_map["header"] if "header" in img.file_map else img.file_map["image"]
        with ImageOpener(holder.filename) as handle:
            header = type(img.header).from_fileobj(handle, check=False)
        if int(header["sform_code"]) > 0:
            return ""
        pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for corrupt files
        return f"unreadable NIfTI header ({type(exc).__name__})"
    if np.isfinite(pixdim).all() and (pixdim > 0).all():
        return ""
    sizes = "x".join(f"{v:g}" for v in pixdim)
    return f"voxel size {sizes} mm in the header (pixdim): every voxel size must be positive"


def load_volume(path, check_finite: bool = True) -> Volume:
    """Load a 3D NIfTI volume as float32 (x, y, z) plus its 4x4 affine in mm.

    Raises :class:`PetiteError` with a one-line message naming ``path`` when the file is
    missing or unreadable, is not 3D (a trailing singleton 4th axis is accepted), holds no real
    numbers (complex, RGB) or no voxels, has no valid voxel size (zero pixdim, a zero or singular
    axis in the affine), or holds NaN/Inf values (unless ``check_finite`` is False).
    """
    import nibabel as nib

    from .input_domain import REAL_KINDS, check_affine

    path = Path(path)
    if path.is_dir():  # a DICOM series folder; series and units as set by PETITELib.dicom.reading
        from .dicom.reader import load_dicom_volume

        return load_dicom_volume(path, check_finite=check_finite)
    if not path.exists():
        raise PetiteError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise PetiteError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PetiteError(f"{path}: expected a 3D volume, got shape {tuple(data.shape)}")
    if data.dtype.kind not in REAL_KINDS:
        raise PetiteError(f"{path}: voxel values of type {data.dtype} are not real numbers")
    if data.size == 0:
        raise PetiteError(f"{path}: the volume is empty (shape {tuple(data.shape)})")
    problem = _header_voxel_size_problem(img)
    if problem:
        raise PetiteError(f"{path}: {problem}")
    affine = check_affine(affine, str(path))
    array = np.asarray(data, dtype=np.float32)
    if check_finite and not np.isfinite(array).all():
        raise PetiteError(f"{path}: contains NaN or Inf values")
    return Volume(array, affine)


def read_grid(path) -> Tuple[Tuple[int, int, int], Tuple[float, float, float]]:
    """(shape, voxel size in mm) of a 3D NIfTI (or a DICOM series folder) from its header alone
    (no voxel data read); the same one-line PetiteErrors as :func:`load_volume` for a missing,
    unreadable, non-3D file or one without a valid voxel size."""
    import nibabel as nib

    from .input_domain import check_affine, voxel_size

    path = Path(path)
    if not path.exists():
        raise PetiteError(f"{path}: file not found")
    if path.is_dir():
        from .dicom.reader import series_grid

        return series_grid(path)
    try:
        img = nib.load(str(path))
        shape = tuple(int(n) for n in img.shape)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:
        raise PetiteError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})") from None
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise PetiteError(f"{path}: expected a 3D volume, got shape {shape}")
    problem = _header_voxel_size_problem(img)
    if problem:
        raise PetiteError(f"{path}: {problem}")
    return shape, voxel_size(check_affine(affine, str(path)))


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_bytes(path, data: bytes, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Refuses (PetiteError) to replace an existing file unless ``overwrite``. A write that fails
    (disk full, read-only or immutable folder, a folder in the way) raises a one-line
    PetiteError naming ``path``; the temporary file is removed and any earlier ``path`` is intact.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise PetiteError(f"{path}: already exists (use --overwrite to replace it)")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates 0600; give the usual rw-r--r--. (Not derived from os.umask, which can
        # only be read by setting it: process-global and racy while a Slicer worker thread writes.)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        raise PetiteError(f"{path}: cannot write ({exc.strerror or type(exc).__name__}); "
                          "nothing was written") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def save_volume(path, array: np.ndarray, affine: np.ndarray, overwrite: bool = False,
                dtype=np.float32) -> Path:
    """Save an (x, y, z) array with a 4x4 mm affine as NIfTI (.nii or .nii.gz), atomically.

    Deterministic bytes for identical inputs (gzip timestamp fixed by nibabel's to_bytes).
    Refuses to replace an existing file unless ``overwrite``.
    """
    import nibabel as nib

    from .input_domain import check_affine

    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3:
        raise PetiteError(f"{path}: refusing to save a non-3D array of shape {array.shape}")
    affine = check_affine(affine, str(path))
    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    raw = img.to_bytes()
    if path.name.endswith(".gz"):
        import gzip
        import io

        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=6) as gz:
            gz.write(raw)
        raw = buf.getvalue()
    atomic_write_bytes(path, raw, overwrite=overwrite)
    return path
