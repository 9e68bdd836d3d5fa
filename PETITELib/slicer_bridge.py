"""The one place where MRML volume nodes and PETITELib volumes meet.

PETITELib volumes are ``(x, y, z)`` float32 arrays with a 4x4 voxel-to-RAS affine in mm
(:class:`PETITELib.nifti_io.Volume`). Slicer's ``arrayFromVolume`` returns ``(k, j, i)``
arrays and a volume node keeps its geometry in the IJK-to-RAS matrix (also voxel-to-RAS in
mm), so the conversion is a transpose plus a copy of that matrix.

Rules kept here: input nodes are never modified (arrays are copied out), an output node
gets its geometry (IJK-to-RAS matrix, parent transform) and its voxel-value quantity/units
(e.g. Bq/mL or SUV) from the node it was computed from, exactly.

No Qt; ``slicer`` and ``vtk`` are imported inside the functions so the rest of PETITELib
never needs them.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from .errors import PetiteError
from .nifti_io import Volume

# DICOM tags (group,element) that identify the scanner, as Slicer's DICOM database stores them.
MANUFACTURER_TAG = "0008,0070"
MODEL_TAG = "0008,1090"


def _require_scalar_image(node) -> None:
    """Raise PetiteError unless ``node`` holds a single-component image."""
    if node is None or node.GetImageData() is None:
        raise PetiteError(f"volume '{node.GetName() if node is not None else '(none)'}': no image data")
    components = node.GetImageData().GetNumberOfScalarComponents()
    if components != 1:
        raise PetiteError(f"volume '{node.GetName()}': expected a scalar volume, got {components} "
                          "components per voxel")


def ijk_to_ras(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (mm) as a float64 numpy array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def volume_grid(node) -> Tuple[Tuple[int, int, int], Tuple[float, float, float]]:
    """A volume node's shape ``(x, y, z)`` in voxels and voxel spacing in mm, without copying voxels.

    The spacing is the column norms of the IJK-to-RAS matrix, as :attr:`Volume.spacing`.
    """
    _require_scalar_image(node)
    shape = tuple(int(n) for n in node.GetImageData().GetDimensions())  # VTK order is (i, j, k)
    spacing = tuple(float(s) for s in np.linalg.norm(ijk_to_ras(node)[:3, :3], axis=0))
    return shape, spacing


def read_volume(node, dtype=np.float32) -> Volume:
    """Copy a scalar volume node into a :class:`Volume`: array ``(x, y, z)`` of ``dtype``, affine 4x4 mm.

    The node is not modified. Raises :class:`PetiteError` when the node holds no image data or
    is not a single-component 3D volume.
    """
    import slicer

    _require_scalar_image(node)
    kji = slicer.util.arrayFromVolume(node)  # a view of VTK-owned memory: always copy out of it
    array = np.array(np.transpose(kji, (2, 1, 0)), dtype=dtype, order="C", copy=True)
    return Volume(array, ijk_to_ras(node))


def write_volume(node, array: np.ndarray, affine: Optional[np.ndarray] = None, like=None) -> None:
    """Fill ``node`` with an ``(x, y, z)`` array and give it a geometry.

    The geometry comes from ``like`` (another volume node: its IJK-to-RAS matrix is copied
    exactly, and its parent transform and voxel-value quantity/units too) or else from
    ``affine`` (4x4, mm). Exactly one of the two must be given. ``like``, the node the
    result was computed from, is only read.
    """
    import slicer
    import vtk

    if (affine is None) == (like is None):
        raise ValueError("write_volume: give exactly one of affine or like")
    array = np.asarray(array)
    if array.ndim != 3:
        raise PetiteError(f"volume '{node.GetName()}': expected a 3D array, got shape {array.shape}")
    if like is not None:
        matrix = vtk.vtkMatrix4x4()
        like.GetIJKToRASMatrix(matrix)
        node.SetAndObserveTransformNodeID(like.GetTransformNodeID())
        copy_units(like, node)
    else:
        matrix = slicer.util.vtkMatrixFromArray(np.asarray(affine, dtype=np.float64))
    node.SetIJKToRASMatrix(matrix)
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(np.transpose(array, (2, 1, 0))))


def new_volume_node(scene, name: str, array: np.ndarray, affine: Optional[np.ndarray] = None, like=None):
    """Add a new scalar volume node named ``name`` (made unique) to ``scene``, filled by :func:`write_volume`."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    write_volume(node, array, affine=affine, like=like)
    node.CreateDefaultDisplayNodes()
    return node


def copy_units(source, target) -> None:
    """Give ``target`` the voxel-value quantity and units (coded entries, e.g. Bq/mL) of ``source``."""
    import slicer

    for getter, setter in (("GetVoxelValueQuantity", "SetVoxelValueQuantity"),
                           ("GetVoxelValueUnits", "SetVoxelValueUnits")):
        entry = getattr(source, getter)()
        copied = None
        if entry is not None:
            copied = slicer.vtkCodedEntry()
            copied.SetFromString(entry.GetAsString())
        getattr(target, setter)(copied)


def dicom_scanner_info(node, database=None) -> Dict[str, str]:
    """Manufacturer and model name of the scanner a volume came from, when it was loaded from DICOM.

    Reads the first SOP instance UID of the node's ``DICOM.instanceUIDs`` attribute (set by
    Slicer's DICOM volume plugins) in ``database`` (default ``slicer.dicomDatabase``).
    Returns ``{"manufacturer": ..., "model": ...}`` or ``{}`` when the volume did not come from
    DICOM or no database is available.
    """
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        return {}
    if database is None:
        import slicer

        database = getattr(slicer, "dicomDatabase", None)
        if database is None:
            return {}
    info = {"manufacturer": database.instanceValue(uids[0], MANUFACTURER_TAG) or "",
            "model": database.instanceValue(uids[0], MODEL_TAG) or ""}
    return {key: value.strip() for key, value in info.items() if value and value.strip()}
