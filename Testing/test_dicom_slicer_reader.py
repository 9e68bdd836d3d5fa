"""The series PETITE writes, read by Slicer's own volume reader (the slicer-core wheel: the
archetype storage node that reads a DICOM series through ITK/GDCM, as Slicer's DICOM scalar
volume plugin does): same geometry, same values."""
import importlib
import os
import sys

import numpy as np
import pytest
from dicom_support import assert_within_quantisation, oblique_affine, write_series
from phantom_head import short_and_long

from PETITELib.dicom import read_series, write_derived_series


def _import_slicer():
    """``import slicer`` from the wheel: with Testing/ on sys.path, the wheel's package would also
    collect Testing/slicer/ (the Slicer tests' folder) as one of its sub-modules."""
    here = os.path.dirname(os.path.abspath(__file__))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        return importlib.import_module("slicer")
    except ImportError:
        return None
    finally:
        sys.path[:] = saved


slicer = _import_slicer()
if slicer is None or not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("needs the slicer-core wheel", allow_module_level=True)

pytestmark = pytest.mark.slicer


def read_with_slicer(folder):
    """(x, y, z) array and IJK-to-RAS matrix of the series in ``folder`` read by MRML."""
    import vtk
    from slicer.util import arrayFromVolume, arrayFromVTKMatrix

    files = sorted(str(p) for p in folder.iterdir())
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(files[0])
    for path in files:
        storage.AddFileName(path)
    storage.SetSingleFile(False)
    assert storage.ReadData(node) == 1
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.transpose(arrayFromVolume(node), (2, 1, 0)), arrayFromVTKMatrix(matrix)


def test_slicer_reads_a_derived_series_with_the_same_geometry_and_values(tmp_path):
    short, _, _ = short_and_long((24, 20, 10), seed=9)
    source = write_series(tmp_path / "source", short, oblique_affine())
    read = read_series(source)
    estimate = read.array * 1.1
    write_derived_series(source, estimate, read.affine, tmp_path / "derived", description="PETITE test",
                         derivation="test", units="BQML")
    array, affine = read_with_slicer(tmp_path / "derived")
    assert np.abs(affine - read.affine).max() < 1e-4
    assert_within_quantisation(array, estimate)
    np.testing.assert_allclose(array, read_series(tmp_path / "derived").array, rtol=1e-6, atol=1e-3)
