"""PETITELogic with the user's models folder (~/.PETITE's layout): the shipped base under another name
and adapters made here from it (CPU), chosen through PETITELib.zoo.selection, run in a `petite` process.

What is checked is the Slicer side (geometry, units, input nodes, adapter choice), not image quality.
"""
import shutil

import numpy as np
import pytest

from petite_slicer_support import oblique_affine, pet_head
from PETITELib import slicer_bridge
from PETITELib.errors import PetiteError

pytestmark = pytest.mark.slicer

SHAPE = (40, 36, 30)
AFFINE = oblique_affine(spacing=(2.03642, 2.03642, 2.425))
SPACING = [float(v) for v in np.linalg.norm(AFFINE[:3, :3], axis=0)]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder: base/tiny.safetensors (the shipped trained UNETR base, renamed) and
    adapters/ with three files: ``site-grid`` (a Siemens scanner with this test's grid),
    ``site-bids`` (GE, model only, as a BIDS cohort records it) and ``broken`` (not a PETITE file)."""
    torch = pytest.importorskip("torch")
    from PETITELib.engine.models import load_base, resolve_base
    from PETITELib.peft import apply_peft, save_adapter

    folder = tmp_path_factory.mktemp("models")
    (folder / "base").mkdir()
    (folder / "adapters").mkdir()
    shipped = resolve_base(None)
    shutil.copyfile(shipped, folder / "base" / "tiny.safetensors")
    model = load_base(shipped, torch.device("cpu")).model
    apply_peft(model, "petite")  # initialised as the identity: the base's trained output
    save_adapter(folder / "adapters" / "site-grid.safetensors", model,
                 scanner={"matrix": list(SHAPE), "spacing": SPACING, "manufacturer": "Siemens"})
    save_adapter(folder / "adapters" / "site-bids.safetensors", model,
                 scanner={"Manufacturer": "GE MEDICAL SYSTEMS", "ManufacturersModelName": "Discovery MI"})
    (folder / "adapters" / "broken.safetensors").write_bytes(b"not safetensors")
    return folder


@pytest.fixture
def logic(petite, models, launcher):
    return petite.PETITELogic(modelsDir=models, processLauncher=launcher)


class FakeDicomDatabase:
    def __init__(self, manufacturer, model):
        self.values = {"0008,0070": manufacturer, "0008,1090": model}

    def instanceValue(self, uid, tag):
        return self.values.get(tag, "")


def test_reconstruct_with_the_users_models_keeps_geometry_shape_units_and_input(scene, slicer_core, logic, models):
    node = slicer_bridge.new_volume_node(scene, "short", pet_head(SHAPE), affine=AFFINE)
    units = slicer_core.vtkCodedEntry()
    units.SetValueSchemeMeaning("Bq/ml", "UCUM", "Becquerels per milliliter")
    node.SetVoxelValueUnits(units)
    before = slicer_core.util.arrayFromVolume(node).copy()

    job = logic.reconstructJob(node, adapter="auto", device="cpu")
    command = job.args[3:]
    assert command[command.index("--base") + 1] == str(models / "base" / "tiny.safetensors")
    assert command[command.index("--adapter") + 1] == str(models / "adapters" / "site-grid.safetensors")
    events = []
    output = job.run(events.append)

    np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(output), AFFINE)
    assert slicer_core.util.arrayFromVolume(output).shape == before.shape
    assert np.isfinite(slicer_core.util.arrayFromVolume(output)).all()
    assert output.GetVoxelValueUnits().GetAsString() == units.GetAsString()
    assert output.GetAttribute("PETITE.models") == "adapter 'site-grid'"  # auto chose by grid, not shipped
    np.testing.assert_array_equal(slicer_core.util.arrayFromVolume(node), before)
    assert events and events[-1].fraction == 1.0


def test_users_adapters_are_listed_with_their_scanner(logic):
    adapters = {a.name: a for a in logic.availableAdapters()}
    assert sorted(adapters) == ["broken", "site-bids", "site-grid"]
    assert adapters["site-grid"].description == "Siemens, 40x36x30 at 2.03642x2.03642x2.425 mm"
    assert adapters["site-grid"].spec.startswith("enc=lora") and not adapters["site-grid"].shipped
    assert adapters["site-bids"].description == "GE MEDICAL SYSTEMS Discovery MI"
    assert adapters["broken"].description.startswith("unreadable")
    assert "(shipped" not in adapters["site-grid"].label()


def test_auto_uses_dicom_manufacturer_and_model(scene, slicer_core, logic, monkeypatch):
    node = slicer_bridge.new_volume_node(scene, "short", pet_head(SHAPE), affine=AFFINE)
    assert logic.chooseModels(node, "auto").adapter_name == "site-grid"
    assert logic.detectScanner(node) is None  # not one of Table 4's grids

    node.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    monkeypatch.setattr(slicer_core, "dicomDatabase", FakeDicomDatabase("GE Healthcare", "Discovery MI"),
                        raising=False)
    assert logic.chooseModels(node, "auto").adapter_name == "site-bids"  # the grid's adapter is another vendor's
    monkeypatch.setattr(slicer_core, "dicomDatabase", FakeDicomDatabase("Philips", "Vereos"), raising=False)
    assert logic.chooseModels(node, "auto").adapter is None  # base model only
    with pytest.raises(PetiteError, match="broken.safetensors: not a PETITE model or adapter file"):
        logic.chooseModels(node, "broken")


def test_peft_specs_follow_the_base_models_backbone(petite, logic, models):
    specs = logic.peftSpecs(models / "base" / "tiny.safetensors")
    assert specs[0] == "petite" and "full" in specs and "lora" in specs
    assert "enc=lora+dec=ssf+bitfit" in specs  # a feasible UNETR mix (Table 7)
    assert logic.chooseModels(None, "none").base == models / "base" / "tiny.safetensors"  # the only base
