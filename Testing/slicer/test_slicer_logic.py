"""PETITELogic on a real MRML scene with the real PETITELib: every job runs the `petite` command line
in a separate process on the shipped CPU model (no stub of PETITELib.api anywhere)."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import one_thread_launcher
from petite_slicer_support import REPO, new_scene, oblique_affine, pet_head
from PETITELib import nifti_io, sample_data, slicer_bridge
from PETITELib.errors import Cancelled, PetiteError

pytestmark = pytest.mark.slicer

UNIX_ONLY = ("resource", "fcntl", "termios", "pwd", "grp")
NOT_IN_SLICER = ("nilearn", "matplotlib", "pandas", "sklearn")  # the Slicer set-up does not install these


@pytest.fixture
def logic(petite, tmp_path, launcher):
    return petite.PETITELogic(modelsDir=tmp_path / "models", processLauncher=launcher)


def _short_node(scene, slicer_core, seed=0, shape=(30, 26, 22)):
    node = slicer_bridge.new_volume_node(scene, "short", pet_head(shape, seed=seed), affine=oblique_affine())
    units = slicer_core.vtkCodedEntry()
    units.SetValueSchemeMeaning("Bq/ml", "UCUM", "Becquerels per milliliter")
    node.SetVoxelValueUnits(units)
    return node


def _work_folders(job):
    return job.workFolder, [p for p in job.workFolder.parent.glob("PETITE-*")]


def test_reconstruct_runs_petite_in_a_process_and_keeps_geometry_units_and_input(
        scene, slicer_core, logic, shipped_zoo):
    node = _short_node(scene, slicer_core)
    before = slicer_core.util.arrayFromVolume(node).copy()
    events = []
    job = logic.reconstructJob(node, adapter="none", device="cpu")
    assert job.args[1:4] == ["-m", "PETITELib.cli", "reconstruct"] and job.args[-1] == "--progress-json"
    assert job.workFolder.is_dir() and (job.workFolder / "input.nii.gz").is_file()
    output = job.run(events.append)

    assert not job.workFolder.exists()  # the temporary folder is gone
    assert output is not node and output.GetName() == "short PETITE"
    assert output.GetAttribute("PETITE.models") == "base model only (no adapter)"
    np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(output), slicer_bridge.ijk_to_ras(node))
    result = slicer_core.util.arrayFromVolume(output)
    assert result.shape == before.shape and np.isfinite(result).all()
    assert output.GetVoxelValueUnits().GetAsString() == node.GetVoxelValueUnits().GetAsString()
    np.testing.assert_array_equal(slicer_core.util.arrayFromVolume(node), before)  # input untouched
    assert events and events[-1].stage == "reconstruct" and events[-1].fraction == 1.0

    again = logic.reconstruct(node, adapter="none", device="cpu", outputVolumeNode=output)
    assert again is output  # an existing output node is reused
    with pytest.raises(PetiteError, match="is the input"):
        logic.reconstructJob(node, adapter="none", outputVolumeNode=node)


def test_cancel_kills_the_process_tree_within_2_s_and_leaves_no_output_or_folder(
        scene, slicer_core, petite, tmp_path, shipped_zoo):
    """The job runs behind a launcher process (as PythonSlicer starts the real Python): cancelling
    must end both within 2 s, write no output file, keep no temporary folder and add no node."""
    psutil = pytest.importorskip("psutil")
    own = one_thread_launcher(petite)

    def behind_a_launcher(args, environment):
        return own([args[0], "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))", *args],
                   environment)

    logic = petite.PETITELogic(modelsDir=tmp_path / "models", processLauncher=behind_a_launcher)
    volume, affine = pet_head((128, 128, 90), seed=3), np.diag([2.0, 2.0, 2.0, 1.0])
    node = slicer_bridge.new_volume_node(scene, "large", volume, affine=affine)
    volumes = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    job = logic.reconstructJob(node, adapter="auto", device="cpu").start()
    output = job.workFolder / "output.nii.gz"
    deadline = time.monotonic() + 600  # a guard against a hang only: a loaded machine starts torch slowly
    while not [e for e in job.events() if e.stage == "reconstruct"]:  # inference is under way
        assert job.running and time.monotonic() < deadline, job.outputLines
        time.sleep(0.05)
    tree = psutil.Process(job._process.pid).children(recursive=True) + [psutil.Process(job._process.pid)]
    assert len(tree) >= 2

    tic = time.monotonic()
    job.cancel()
    elapsed = time.monotonic() - tic
    assert elapsed < 2.0
    assert not any(member.is_running() and member.status() != psutil.STATUS_ZOMBIE for member in tree)
    assert not output.exists() and not job.workFolder.exists()
    with pytest.raises(Cancelled):
        job.finish()
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == volumes


def test_a_failing_process_shows_its_last_error_line(scene, slicer_core, logic, petite, shipped_zoo, tmp_path):
    node = _short_node(scene, slicer_core)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    with pytest.raises(PetiteError) as error:
        logic.reconstruct(node, adapter=str(broken), device="cpu")
    assert str(broken) in str(error.value) and "\n" not in str(error.value)
    assert not str(error.value).startswith("petite:")

    def crash(args, environment):  # a process that dies without a word (e.g. killed by the system)
        return petite.launchProcess([args[0], "-c", "import os; os._exit(3)"], environment)

    job = petite.PETITELogic(modelsDir=tmp_path / "m", processLauncher=crash).reconstructJob(node, adapter="none")
    with pytest.raises(PetiteError, match="ended with exit code 3"):
        job.run()
    assert not job.workFolder.exists()


def test_device_errors_speak_of_the_panel_not_of_command_line_flags(petite, logic):
    devices = logic.deviceProbeJob().run()
    assert devices["cuda"] is False and devices["auto"].startswith("cpu")  # this machine has no GPU
    assert devices["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    if sys.platform != "darwin":
        with pytest.raises(PetiteError, match="Device GPU: CUDA is not available") as error:
            logic.deviceName("gpu", devices)
        assert "--device" not in str(error.value)
    assert logic.deviceName("auto", devices) == "auto" and logic.deviceName("cpu", devices) == "cpu"


BLOCKER = """# Makes these modules unimportable in every Python started with this folder on PYTHONPATH.
import sys

BLOCKED = {blocked!r}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {{name!r}} (blocked by the test)")
        return None


sys.meta_path.insert(0, Blocker())
for loaded in [name for name in sys.modules if name.split(".")[0] in BLOCKED]:
    del sys.modules[loaded]
"""


def test_job_path_works_with_unix_only_modules_and_nilearn_unimportable(tmp_path):
    """As on Windows (no `resource`, `fcntl`, `termios`, `pwd`, `grp`) and inside Slicer (no
    nilearn, matplotlib, pandas, scikit-learn): a fresh Python where those imports fail loads the
    module, reconstructs the sample pair in a `petite` process where they fail too (the same
    sitecustomize is on its PYTHONPATH), and compares the result."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "sitecustomize.py").write_text(BLOCKER.format(blocked=UNIX_ONLY + NOT_IN_SLICER))
    script = f"""
import sys
for name in {UNIX_ONLY + NOT_IN_SLICER!r}:
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(name + ' is importable')
sys.path.insert(0, {str(REPO / 'Testing' / 'slicer')!r})
import slicer
from petite_slicer_support import install_stand_ins, import_module_file, new_scene
install_stand_ins()
petite = import_module_file()
slicer.mrmlScene = new_scene()

def launch(args, environment):
    environment = dict(environment, OMP_NUM_THREADS='1',
                       PYTHONPATH={str(blocked)!r} + {os.pathsep!r} + environment['PYTHONPATH'])
    return petite.launchProcess(args, environment)

logic = petite.PETITELogic(modelsDir={str(tmp_path / 'models')!r}, processLauncher=launch)
short, long_ = logic.loadSampleData()
output = logic.reconstruct(short, adapter='auto', device='cpu')
print(logic.compare(output, long_, errorMaps=False)['metrics']['psnr'])
print(sorted(name for name in sys.modules if name.split('.')[0] in {UNIX_ONLY + NOT_IN_SLICER!r}))
"""
    environment = {k: v for k, v in os.environ.items() if k != "PETITE_ZOO_DIR"}  # the shipped zoo
    environment["PYTHONPATH"] = str(blocked)
    environment.setdefault("USERNAME", "petite")  # always set on Windows: getpass.getuser() (MONAI) reads it
    probe = subprocess.run([sys.executable, "-c", "import resource"], capture_output=True, text=True,
                           env=environment)
    assert "blocked by the test" in probe.stderr  # the blocker works in every Python started so
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                         env=environment)
    assert run.returncode == 0, run.stdout + run.stderr
    psnr, loaded = run.stdout.strip().splitlines()[-2:]
    assert float(psnr) > 25 and loaded == "[]"


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
    legend = logic.colorLegend(result["signedError"])  # every error map has a colour legend
    assert legend.IsA("vtkMRMLColorLegendDisplayNode") and legend.GetPrimaryDisplayNode() is not None
    assert "signed error" in legend.GetTitleText()

    again = logic.compare(nodes["recon"], nodes["long"], signedErrorNode=result["signedError"],
                          absoluteErrorNode=result["absoluteError"])
    assert (again["signedError"], again["absoluteError"]) == (result["signedError"], result["absoluteError"])
    assert logic.colorLegend(again["signedError"]) is legend  # one legend per map
    assert logic.compare(nodes["long"], nodes["long"], errorMaps=False)["signedError"] is None


def test_compare_refuses_volumes_on_different_grids(scene, logic):
    a = slicer_bridge.new_volume_node(scene, "a", pet_head(), affine=oblique_affine())
    b = slicer_bridge.new_volume_node(scene, "b", pet_head(), affine=oblique_affine(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(PetiteError, match="same voxel grid"):
        logic.compare(a, b)


def test_metrics_are_saved_with_the_scene(scene, slicer_core, petite, logic, tmp_path):
    short, long_ = logic.loadSampleData()
    parameters = logic.getParameterNode()
    parameters.inputVolume, parameters.reconstructedVolume, parameters.referenceVolume = short, short, long_
    saved = logic.compareInScene(parameters)
    assert saved["reconstruction"]["psnr"] > 0 and saved["input"] is None  # the short scan is the reconstruction

    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()
    reloaded = new_scene()
    reloaded.SetURL(str(tmp_path / "scene.mrml"))
    assert reloaded.Connect()
    node = reloaded.GetSingletonNode("PETITE", "vtkMRMLScriptedModuleNode")
    assert json.loads(node.GetParameter("metrics")) == json.loads(json.dumps(saved))
    assert node.GetParameter("cohortDir") == "" and node.GetParameter("baseModel") == ""  # unset paths: empty


def test_finetune_is_checked_before_any_process(logic, tmp_path, shipped_zoo):
    cohort = tmp_path / "site-A"
    cohort.mkdir()
    job = logic.finetuneJob(cohort, peft="lora", epochs=2, lr=1e-3, device="cpu", batch_size=2)
    command = job.args[3:]
    assert command[:3] == ["finetune", "--cohort", str(cohort)]
    assert command[command.index("--out") + 1] == str(job.workFolder / "site-A-lora.safetensors")
    assert ["--epochs", "2"] == command[command.index("--epochs"):][:2]
    assert ["--batch-size", "2"] == command[command.index("--batch-size"):][:2]
    assert command[command.index("--base") + 1] == str(shipped_zoo / "unetr-cpu-base.safetensors")
    job.cancel()  # never started: its folder goes
    assert not job.workFolder.exists()

    logic.adaptersDir.mkdir(parents=True)
    (logic.adaptersDir / "site-A-lora.safetensors").write_bytes(b"x")
    with pytest.raises(PetiteError, match="already exists"):
        logic.finetuneJob(cohort, peft="lora")
    with pytest.raises(PetiteError, match="letters, digits"):
        logic.finetuneJob(cohort, adapterName="../evil")
    with pytest.raises(PetiteError, match="not a folder"):
        logic.finetuneJob(tmp_path / "missing")


def test_sample_pair_is_shipped_and_loads_in_bq_per_ml(scene, logic, petite):
    from PETITELib.data.scanners import get_scanner

    short, long_ = logic.loadSampleData()
    scanner = get_scanner(sample_data.SAMPLE_SCANNER)
    for node in (short, long_):
        assert slicer_bridge.volume_grid(node) == (scanner.matrix, scanner.spacing)
        np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(node), scanner.affine())
        assert node.GetVoxelValueUnits().GetCodeValue() == "Bq/ml"
        assert node.GetAttribute("PETITE.simulated") == "1"
    assert short.GetName() == "PETITE scanner4 short"
    paths = sample_data.sample_pair_paths()
    assert all(path.is_file() for path in paths)
    assert sum(path.stat().st_size for path in paths) < 5e6  # a small pair: see docs/slicer.md
    assert sample_data.sample_data_dir() == REPO / "Resources" / "SampleData"


def test_volumes_that_are_not_scalar_are_refused_clearly(scene, slicer_core, logic, petite):
    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer_core.util.updateVolumeFromArray(vector, np.zeros((4, 5, 6, 3), np.uint8))
    assert not petite.isScalarVolume(vector) and not petite.isScalarVolume(None)
    assert petite.isScalarVolume(_short_node(scene, slicer_core))
    with pytest.raises(PetiteError, match="'rgb': not a scalar volume"):
        logic.reconstructJob(vector)


def test_a_saved_adapter_that_is_not_installed_is_named_not_replaced(scene, slicer_core, logic, shipped_zoo):
    node = _short_node(scene, slicer_core)
    with pytest.raises(PetiteError, match="--adapter site-x: no such file, nor in .*adapters") as error:
        logic.chooseModels(node, "site-x")
    assert "\n" not in str(error.value)
    parameters = logic.getParameterNode()
    parameters.adapter = "site-x"
    assert logic.getParameterNode().adapter == "site-x"


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
