"""PETITELogic with the model zoo shipped with the extension (PETITELib.zoo), on a real MRML scene.

A tiny zoo is made here (CvT-GAN ``cpu`` preset, random weights, CPU): a base model, adapters
``scanner-a`` (this test's grid) and ``scanner-b`` (another grid) made for it, and ``foreign``,
recorded for another base. Each test gets its own copy, pointed at by ``$PETITE_ZOO_DIR`` (which the
`petite` processes inherit), so it may corrupt files. What is checked is which files the logic
uses, and that shipped files are checked (SHA-256) in the process that uses them, not image quality.
"""
import json
import shutil

import numpy as np
import pytest

from petite_slicer_support import oblique_affine, pet_head
from PETITELib import slicer_bridge
from PETITELib.errors import PetiteError

pytestmark = pytest.mark.slicer

SHAPE = (30, 26, 22)
AFFINE = oblique_affine()
SPACING = [float(v) for v in np.linalg.norm(AFFINE[:3, :3], axis=0)]
OTHER_GRID = {"matrix": [128, 128, 90], "spacing": [2.0, 2.0, 2.0], "manufacturer": "Philips"}
BASE_FILE = "cvtgan-cpu-base.safetensors"


def _adapter_file(name):
    return f"cvtgan-cpu-{name}.safetensors"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """The shipped files (base, scanner-a, scanner-b, foreign) and a user's own base ``user-base``."""
    torch = pytest.importorskip("torch")
    from PETITELib.backbones import build_backbone
    from PETITELib.peft import apply_peft, save_adapter, save_base_model

    folder = tmp_path_factory.mktemp("zoo-files")
    torch.manual_seed(1)
    save_base_model(folder / "user-base.safetensors", build_backbone("cvtgan", "cpu"))
    torch.manual_seed(0)
    model = build_backbone("cvtgan", "cpu")
    save_base_model(folder / BASE_FILE, model)
    apply_peft(model, "petite")
    grid = {"matrix": list(SHAPE), "spacing": SPACING, "manufacturer": "Siemens"}
    for name, scanner in (("scanner-a", grid), ("scanner-b", OTHER_GRID), ("foreign", grid)):
        save_adapter(folder / _adapter_file(name), model, scanner=scanner)
    return folder


def _record(folder, name, kind, file, scanner, **extra):
    from PETITELib.zoo.manifest import file_sha256

    path = folder / file
    return {"name": name, "kind": kind, "file": file, "sha256": file_sha256(path), "size": path.stat().st_size,
            "spec": "" if kind == "base" else "petite", "scanner": scanner, **extra}


@pytest.fixture
def zoo(model_files, tmp_path, monkeypatch):
    """A shipped zoo in this test's folder (copies of the files, and a manifest.json), in use."""
    folder = tmp_path / "zoo"
    folder.mkdir()
    for name in (BASE_FILE, *(_adapter_file(n) for n in ("scanner-a", "scanner-b", "foreign"))):
        shutil.copyfile(model_files / name, folder / name)
    metrics = {"input": {"mean": {"psnr": 27.0}}, "no-ft": {"mean": {"psnr": 29.46}},
               "adapter": {"mean": {"psnr": 30.14}}}
    models = [
        _record(folder, "base", "base", BASE_FILE, {"id": 1}, description="base model", metrics={}),
        _record(folder, "scanner-a", "adapter", _adapter_file("scanner-a"),
                {"matrix": list(SHAPE), "spacing": SPACING, "manufacturer": "Siemens"}, base="base",
                description="scanner A", metrics=metrics),
        _record(folder, "scanner-b", "adapter", _adapter_file("scanner-b"), OTHER_GRID, base="base",
                description="scanner B", metrics={}),
        _record(folder, "foreign", "adapter", _adapter_file("foreign"),
                {"matrix": list(SHAPE), "spacing": SPACING}, base="another-base", description="foreign",
                metrics=metrics),
    ]
    (folder / "manifest.json").write_text(json.dumps({"format": "petite-zoo", "format_version": 1,
                                                      "models": models}))
    monkeypatch.setenv("PETITE_ZOO_DIR", str(folder))
    return folder


@pytest.fixture
def logic(petite, tmp_path, launcher):
    return petite.PETITELogic(modelsDir=tmp_path / "models", processLauncher=launcher)


def _install(folder, source, name):
    """Copy ``source`` into ``folder`` as ``name`` (a file the user installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, folder / name)
    return folder / name


def _corrupt(path):
    """Flip the last bytes (tensor data: the file still parses, only its SHA-256 tells)."""
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(b ^ 0xFF for b in data[-16:])
    path.write_bytes(bytes(data))


def _node(scene, shape=SHAPE, affine=AFFINE):
    return slicer_bridge.new_volume_node(scene, "short", pet_head(shape), affine=affine)


def test_empty_models_folder_reconstructs_with_the_shipped_base(scene, slicer_core, logic, zoo):
    assert not logic.modelsDir.exists()
    assert logic.chooseModels(None, "none").base == zoo / BASE_FILE
    node = _node(scene)
    output = logic.reconstruct(node, adapter="none", device="cpu")
    assert output.GetAttribute("PETITE.models") == "base model only (no adapter)"
    result = slicer_core.util.arrayFromVolume(output)
    assert result.shape == slicer_core.util.arrayFromVolume(node).shape and np.isfinite(result).all()
    np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(output), AFFINE)


def test_a_base_installed_by_the_user_wins_and_several_are_refused(logic, zoo, model_files):
    user = _install(logic.baseModelsDir, model_files / "user-base.safetensors", "mine.safetensors")
    assert logic.chooseModels(None, "none").base == user
    _install(logic.baseModelsDir, model_files / "user-base.safetensors", "other.safetensors")
    with pytest.raises(PetiteError, match="holds 2 base models") as error:
        logic.chooseModels(None, "none")
    assert "\n" not in str(error.value)


def test_no_base_anywhere_is_one_clear_line(logic, tmp_path, monkeypatch):
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path / "no-zoo-here"))
    with pytest.raises(PetiteError, match="no shipped base model found nor in .*base") as error:
        logic.chooseModels(None, "none")
    assert "\n" not in str(error.value)
    assert logic.availableAdapters() == []


def test_finetune_without_a_base_adapts_the_shipped_base(logic, zoo, tmp_path):
    cohort = tmp_path / "site-A"
    cohort.mkdir()
    job = logic.finetuneJob(cohort, peft="lora")
    assert job.args[job.args.index("--base") + 1] == str(zoo / BASE_FILE)
    job.cancel()


def test_shipped_adapters_are_listed_for_the_shipped_base_only(logic, zoo, model_files):
    adapters = {a.name: a for a in logic.availableAdapters()}
    assert sorted(adapters) == ["scanner-a", "scanner-b"]  # not 'foreign': made for another base
    shipped = adapters["scanner-a"]
    assert shipped.shipped and shipped.path == zoo / _adapter_file("scanner-a") and shipped.spec == "petite"
    assert shipped.metrics == "held-out PSNR 30.1 dB vs base 29.5 dB"
    assert shipped.label() == ("scanner-a - scanner A [petite] (shipped, trained on simulated scans: "
                               "held-out PSNR 30.1 dB vs base 29.5 dB)")
    assert adapters["scanner-b"].metrics == ""
    assert adapters["scanner-b"].label().endswith("(shipped, trained on simulated scans)")

    # Listing reads the manifest only: a corrupted file is still listed (it fails when used).
    _corrupt(zoo / _adapter_file("scanner-b"))
    assert [a.name for a in logic.availableAdapters()] == ["scanner-a", "scanner-b"]

    # A user adapter of the same name wins, listed once, before the shipped ones.
    _install(logic.adaptersDir, model_files / _adapter_file("scanner-a"), "scanner-a.safetensors")
    listed = logic.availableAdapters()
    assert [(a.name, a.shipped) for a in listed] == [("scanner-a", False), ("scanner-b", True)]
    assert listed[0].path == logic.adaptersDir / "scanner-a.safetensors"

    # Another base in use (chosen, or installed in base/): the shipped adapters do not fit it.
    other = model_files / "user-base.safetensors"
    assert [a.name for a in logic.availableAdapters(base=other)] == ["scanner-a"]
    assert [a.name for a in logic.availableAdapters(base=zoo / BASE_FILE)] == ["scanner-a", "scanner-b"]
    _install(logic.baseModelsDir, other, "mine.safetensors")
    assert [(a.name, a.shipped) for a in logic.availableAdapters()] == [("scanner-a", False)]


def test_auto_picks_the_shipped_adapter_of_the_volumes_scanner_and_says_so(scene, logic, zoo, model_files):
    node = _node(scene)
    choice = logic.chooseModels(node, "auto")
    assert (choice.adapter_name, choice.adapter_shipped) == ("scanner-a", True)
    other = _node(scene, (16, 16, 12), oblique_affine(spacing=OTHER_GRID["spacing"]))
    assert logic.chooseModels(other, "auto").adapter is None  # right spacing, wrong matrix: base model only
    assert logic.chooseModels(other, "scanner-b").adapter == zoo / _adapter_file("scanner-b")  # by name

    output = logic.reconstruct(node, adapter="auto", device="cpu")
    assert output.GetAttribute("PETITE.models") == ("Uses the shipped adapter 'scanner-a': trained on simulated "
                                                    "scans only (research use); fine-tune an adapter on your own "
                                                    "scans.")

    # On a tie, the user's own adapter for the same scanner (trained on this base) comes first.
    _install(logic.adaptersDir, model_files / _adapter_file("scanner-a"), "mine.safetensors")
    mine = logic.chooseModels(node, "auto")
    assert (mine.adapter_name, mine.adapter_shipped) == ("mine", False)
    _install(logic.baseModelsDir, model_files / "user-base.safetensors", "other-base.safetensors")
    assert logic.chooseModels(node, "auto").adapter is None  # 'mine' was trained on another base


def test_a_corrupted_shipped_file_fails_in_the_process_with_one_line_naming_it(scene, logic, zoo):
    node = _node(scene)
    path = zoo / _adapter_file("scanner-a")
    _corrupt(path)
    assert logic.chooseModels(node, "auto").adapter == path  # the panel's look-ups do not hash
    volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(PetiteError, match="corrupted") as error:
        logic.reconstruct(node, adapter="scanner-a", device="cpu")
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes  # no output made


def test_an_unreadable_manifest_leaves_the_panel_as_without_a_zoo(logic, zoo):
    (zoo / "manifest.json").write_text("{not json")
    with pytest.raises(PetiteError, match="no shipped base model found"):
        logic.chooseModels(None, "none")
    assert logic.availableAdapters() == []
