"""PETITELib.slicer_bridge on real MRML volume nodes: axis order, geometry, units, no input changes."""
import numpy as np
import pytest
vtk = pytest.importorskip("vtk")

from petite_slicer_support import oblique_affine, pet_head
from PETITELib import nifti_io, slicer_bridge
from PETITELib.errors import PetiteError

pytestmark = pytest.mark.slicer


def _bq_per_ml(slicer):
    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning("Bq/ml", "UCUM", "Becquerels per milliliter")
    return units


def test_read_volume_is_xyz_with_the_ijk_to_ras_affine(scene, slicer_core):
    """Voxel (i, j, k) of the node is array[i, j, k]; the affine maps it where Slicer puts it."""
    kji = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)  # k=5, j=4, i=3
    affine = oblique_affine()
    node = slicer_core.util.addVolumeFromArray(kji, affine, name="kji")
    volume = slicer_bridge.read_volume(node)
    assert volume.array.shape == (3, 4, 5) and volume.array.dtype == np.float32
    assert volume.array[2, 1, 4] == kji[4, 1, 2]
    np.testing.assert_array_equal(volume.affine, affine)
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ras = matrix.MultiplyPoint((2.0, 1.0, 4.0, 1.0))  # where Slicer puts voxel i=2, j=1, k=4
    np.testing.assert_allclose(ras, volume.affine @ [2.0, 1.0, 4.0, 1.0], atol=1e-12)


def test_round_trip_keeps_voxels_geometry_units_and_input(scene, slicer_core):
    """node -> (array, affine) -> new node: identical voxels, IJK-to-RAS, units; input untouched."""
    array, affine = pet_head(), oblique_affine()
    node = slicer_bridge.new_volume_node(scene, "short", array, affine=affine)
    node.SetVoxelValueUnits(_bq_per_ml(slicer_core))
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "bed")
    node.SetAndObserveTransformNodeID(transform.GetID())
    before = slicer_core.util.arrayFromVolume(node).copy()

    volume = slicer_bridge.read_volume(node)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_array_equal(volume.affine, affine)
    volume.array[:] = -1.0  # our copy: the node must not see this
    np.testing.assert_array_equal(slicer_core.util.arrayFromVolume(node), before)

    copy = slicer_bridge.new_volume_node(scene, "short", slicer_bridge.read_volume(node).array, like=node)
    assert copy.GetName() != node.GetName()  # made unique
    np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(copy), slicer_bridge.ijk_to_ras(node))
    np.testing.assert_array_equal(slicer_core.util.arrayFromVolume(copy), before)
    assert copy.GetVoxelValueUnits().GetAsString() == node.GetVoxelValueUnits().GetAsString()
    assert copy.GetTransformNodeID() == transform.GetID()
    assert copy.GetDisplayNode() is not None


def test_nifti_loaded_by_a_storage_node_matches_nifti_io(scene, slicer_core, tmp_path):
    """A NIfTI read by Slicer's storage node gives the same (x, y, z) array and affine as nifti_io."""
    path = nifti_io.save_volume(tmp_path / "oblique.nii.gz", pet_head(seed=3), oblique_affine())
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "loaded")
    assert storage.ReadData(node)
    from_slicer = slicer_bridge.read_volume(node)
    from_file = nifti_io.load_volume(path)
    np.testing.assert_array_equal(from_slicer.array, from_file.array)
    np.testing.assert_allclose(from_slicer.affine, from_file.affine, atol=1e-5)


def test_write_volume_needs_exactly_one_geometry_and_a_3d_array(scene):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out")
    with pytest.raises(ValueError):
        slicer_bridge.write_volume(node, np.zeros((2, 2, 2)))
    with pytest.raises(PetiteError, match="expected a 3D array"):
        slicer_bridge.write_volume(node, np.zeros((2, 2)), affine=np.eye(4))
    with pytest.raises(PetiteError, match="no image data"):
        slicer_bridge.read_volume(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))


def test_dicom_scanner_info_reads_manufacturer_and_model(scene):
    class Database:
        values = {("1.2.3", "0008,0070"): "Philips Medical Systems ", ("1.2.3", "0008,1090"): "GEMINI TF"}

        def instanceValue(self, uid, tag):
            return self.values.get((uid, tag), "")

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "dicom")
    assert slicer_bridge.dicom_scanner_info(node, Database()) == {}
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert slicer_bridge.dicom_scanner_info(node, Database()) == {
        "manufacturer": "Philips Medical Systems", "model": "GEMINI TF"}
