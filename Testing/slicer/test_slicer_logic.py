"""PETITELogic on a real MRML scene: reconstruct, compare, fine-tune, jobs, and the module self-test."""
import sys
import types

import numpy as np
import pytest

import PETITELib
from petite_slicer_support import oblique_affine, pet_head
from PETITELib import nifti_io, slicer_bridge
from PETITELib.errors import Cancelled, PetiteError
from PETITELib.progress import report

pytestmark = pytest.mark.slicer


@pytest.fixture
def fake_api(monkeypatch):
    """PETITELib.api replaced by recording stand-ins: tests of the logic's plumbing, not of the network.

    ``reconstruct`` returns volume + x index (so an axis mix-up shows), reporting one event per
    x-slab and checking ``cancel`` between slabs; ``finetune`` writes a small file to ``out``.
    """
    api = types.SimpleNamespace(calls=[])

    def reconstruct(volume, affine, *, base=None, adapter=None, device="auto", progress=None, cancel=None):
        api.calls.append(("reconstruct", volume.copy(), affine.copy(), base, adapter, device))
        for x in range(volume.shape[0]):
            if cancel is not None:
                cancel.check()
            report(progress, "reconstruct", x + 1, volume.shape[0])
        return (volume + np.arange(volume.shape[0], dtype=np.float32)[:, None, None]).astype(np.float32)

    def finetune(cohort_dir, *, base, peft="petite", out, epochs=None, lr=None, seed=0, device="auto",
                 progress=None, cancel=None):
        api.calls.append(("finetune", cohort_dir, base, peft, out, epochs, lr, seed, device))
        for epoch in range(1, 3):  # as the engine reports: steps done, "epoch e/E", the metrics so far
            report(progress, "finetune", 5 * epoch, 10, f"epoch {epoch}/2", loss=0.1 / epoch,
                   val_psnr=30.0 + epoch if epoch > 1 else None)
        out.write_bytes(b"adapter")
        return out

    module = types.ModuleType("PETITELib.api")
    module.reconstruct, module.finetune = reconstruct, finetune
    monkeypatch.setitem(sys.modules, "PETITELib.api", module)
    monkeypatch.setattr(PETITELib, "api", module, raising=False)
    return api


@pytest.fixture
def logic(petite, tmp_path):
    return petite.PETITELogic(modelsDir=tmp_path / "models")


def _short_node(scene, slicer_core, seed=0):
    node = slicer_bridge.new_volume_node(scene, "short", pet_head(seed=seed), affine=oblique_affine())
    units = slicer_core.vtkCodedEntry()
    units.SetValueSchemeMeaning("Bq/ml", "UCUM", "Becquerels per milliliter")
    node.SetVoxelValueUnits(units)
    return node


def test_reconstruct_output_keeps_ijk_to_ras_shape_units_and_input(scene, slicer_core, logic, fake_api):
    node = _short_node(scene, slicer_core)
    before = slicer_core.util.arrayFromVolume(node).copy()
    events = []
    output = logic.reconstruct(node, adapter="none", base="base.safetensors", device="cpu", progress=events.append)

    _, volume, affine, base, adapter, device = fake_api.calls[0]
    np.testing.assert_array_equal(volume, before.transpose(2, 1, 0))  # the engine got (x, y, z)
    np.testing.assert_array_equal(affine, slicer_bridge.ijk_to_ras(node))
    assert (str(base), adapter, device) == ("base.safetensors", None, "cpu")
    assert output is not node and output.GetName() == "short PETITE"
    np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(output), slicer_bridge.ijk_to_ras(node))
    result = slicer_core.util.arrayFromVolume(output)
    assert result.shape == before.shape
    np.testing.assert_array_equal(result, before + np.arange(before.shape[2], dtype=np.float32))  # x is i
    assert output.GetVoxelValueUnits().GetAsString() == node.GetVoxelValueUnits().GetAsString()
    np.testing.assert_array_equal(slicer_core.util.arrayFromVolume(node), before)  # input untouched
    assert [e.step for e in events] == list(range(1, before.shape[2] + 1))

    again = logic.reconstruct(node, adapter="none", base="base.safetensors", outputVolumeNode=output)
    assert again is output  # an existing output node is reused
    with pytest.raises(PetiteError, match="is the input"):
        logic.reconstruct(node, adapter="none", base="base.safetensors", outputVolumeNode=node)
    with pytest.raises(PetiteError, match="no base model chosen"):
        logic.reconstruct(node, adapter="none")


def test_reconstruct_job_runs_in_the_background_and_cancels_without_output(scene, slicer_core, logic, fake_api):
    node = _short_node(scene, slicer_core)
    job = logic.reconstructJob(node, adapter="none", base="base.safetensors").start()
    assert job.wait(30)
    output = job.finish()
    assert job.events()[-1].fraction == 1.0
    assert output.GetName() == "short PETITE"

    volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    cancelled = logic.reconstructJob(node, adapter="none", base="base.safetensors")
    cancelled.cancel()
    assert cancelled.start().wait(30)
    with pytest.raises(Cancelled):
        cancelled.finish()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes  # nothing created


def test_compare_metrics_equal_petitelib_on_the_nifti_files(scene, logic, tmp_path):
    """Both volumes saved as NIfTI, loaded into the scene by storage nodes: logic == compare_volumes(files)."""
    from PETITELib.metrics import compare_volumes

    affine = oblique_affine()
    long_ = pet_head(seed=5)
    recon = long_ + np.random.default_rng(6).normal(0, 60, long_.shape).astype(np.float32)
    paths = {name: nifti_io.save_volume(tmp_path / f"{name}.nii.gz", array, affine)
             for name, array in (("recon", recon), ("long", long_))}
    nodes = {}
    for name, path in paths.items():
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        nodes[name] = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
        assert storage.ReadData(nodes[name])

    result = logic.compare(nodes["recon"], nodes["long"])
    recon_file, long_file = nifti_io.load_volume(paths["recon"]), nifti_io.load_volume(paths["long"])
    expected = compare_volumes(recon_file.array, long_file.array, spacing=long_file.spacing)
    assert result["metrics"] == pytest.approx(expected, rel=1e-6)
    signed = slicer_bridge.read_volume(result["signedError"])
    np.testing.assert_allclose(signed.array, recon_file.array - long_file.array, atol=1e-3)
    np.testing.assert_allclose(signed.affine, long_file.affine, atol=1e-5)
    display = result["absoluteError"].GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"
    assert display.GetWindowLevelMin() == 0.0

    again = logic.compare(nodes["recon"], nodes["long"], signedErrorNode=result["signedError"],
                          absoluteErrorNode=result["absoluteError"])
    assert (again["signedError"], again["absoluteError"]) == (result["signedError"], result["absoluteError"])
    assert logic.compare(nodes["long"], nodes["long"], errorMaps=False)["signedError"] is None


def test_compare_refuses_volumes_on_different_grids(scene, logic):
    a = slicer_bridge.new_volume_node(scene, "a", pet_head(), affine=oblique_affine())
    b = slicer_bridge.new_volume_node(scene, "b", pet_head(), affine=oblique_affine(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(PetiteError, match="same voxel grid"):
        logic.compare(a, b)


def test_finetune_writes_a_new_adapter_and_refuses_to_overwrite(logic, fake_api, tmp_path, petite):
    cohort = tmp_path / "site-A"
    cohort.mkdir()
    events = []
    path = logic.finetune(cohort, peft="lora", base=tmp_path / "base.safetensors", epochs=2, lr=1e-3,
                          device="cpu", progress=events.append)
    assert path == logic.adaptersDir / "site-A-lora.safetensors" and path.is_file()
    assert fake_api.calls == [("finetune", cohort, tmp_path / "base.safetensors", "lora", path, 2, 1e-3, 0, "cpu")]
    assert [petite.describeProgress(e) for e in events] == ["finetune: epoch 1/2, loss 0.1",
                                                            "finetune: epoch 2/2, loss 0.05, val PSNR 32.00 dB"]
    with pytest.raises(PetiteError, match="already exists"):
        logic.finetuneJob(cohort, peft="lora", base="base.safetensors")
    with pytest.raises(PetiteError, match="letters, digits"):
        logic.finetuneJob(cohort, adapterName="../evil")
    with pytest.raises(PetiteError, match="not a folder"):
        logic.finetuneJob(tmp_path / "missing")


def test_sample_data_is_simulated_once_and_loaded_in_bq_per_ml(scene, logic):
    from PETITELib.data.scanners import get_scanner

    short, long_ = logic.loadSampleData(4)
    scanner = get_scanner(4)
    for node in (short, long_):
        assert slicer_bridge.volume_grid(node) == (scanner.matrix, scanner.spacing)
        np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(node), scanner.affine())
        assert node.GetVoxelValueUnits().GetCodeValue() == "Bq/ml"
    assert short.GetName() == "PETITE scanner4 short"
    files = sorted(logic.sampleDataDir.iterdir())
    stamps = [f.stat().st_mtime_ns for f in files]
    logic.loadSampleData(4)  # cached: not simulated again
    assert [f.stat().st_mtime_ns for f in files] == stamps
    with pytest.raises(PetiteError, match="unknown scanner"):
        logic.loadSampleData(9)


def test_detect_scanner_uses_grid_and_dicom_manufacturer(scene, slicer_core, logic, monkeypatch):
    from PETITELib.data.scanners import SCANNERS

    scanner = SCANNERS[4]
    node = slicer_bridge.new_volume_node(scene, "gemini", np.zeros(scanner.matrix, np.float32),
                                         affine=scanner.affine())
    assert logic.detectScanner(node) is scanner
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3")

    class Database:
        def instanceValue(self, uid, tag):
            return {"0008,0070": "SIEMENS", "0008,1090": "Biograph"}.get(tag, "")

    monkeypatch.setattr(slicer_core, "dicomDatabase", Database(), raising=False)
    assert logic.detectScanner(node) is None  # right grid, wrong vendor


def test_module_self_test_logic_part_runs(petite, scene):
    """PETITETest's logic tests (its panel test needs the Slicer application)."""
    case = petite.PETITETest()
    for name in case.LOGIC_TESTS:
        case.setUp()
        getattr(case, name)()
