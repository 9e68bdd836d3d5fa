"""PETITE: parameter-efficient fine-tuning for multi-scanner PET scan-time reduction, in 3D Slicer.

A thin Slicer module. The panel (PETITEWidget) reads the GUI, starts jobs and shows results;
PETITELogic (no Qt) converts MRML volume nodes through PETITELib.slicer_bridge, chooses models
through PETITELib.zoo.selection and runs Reconstruct and Fine-tune as the ``petite`` command
line in a separate process (PythonSlicer), so that torch never runs inside Slicer: a crash or an
out-of-memory error there ends that process only, and Cancel kills it at once. Everything the
panel does is callable from Slicer's Python console, e.g.::

    logic = slicer.util.getModuleLogic("PETITE")
    output = logic.reconstruct(slicer.util.getNode("short"), adapter="auto", device="auto")
    result = logic.compare(output, slicer.util.getNode("long"))
    print(result["metrics"])  # {"psnr": dB, "ssim": ..., "nrmse": ..., "psnr_whole": ...}

The models shipped with PETITE were trained on simulated scans only: for research use; a site
fine-tunes its own adapter on its own scans (Fine-tune) before reading anything into real scans.
"""
import contextlib
import enum
import json
import logging
import os
import pathlib
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
import traceback
from typing import Annotated, Callable, Dict, List, NamedTuple, Optional, Sequence

import qt
import vtk

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


def extensionPath(relativePath: str) -> str:
    """Absolute path of a file or folder of the extension, given relative to the repository root
    (e.g. ``PETITELib`` or ``Resources/UI/PETITE.ui``), in either layout of the extension.

    Installed (Extensions Manager, or a build tree), PETITELib/ and Resources/ are copied beside
    this file, into the scripted-modules folder (see PETITE/CMakeLists.txt). In a source checkout
    (the PETITE/ folder added as an additional module path, in developer mode) they stay at the
    repository root, which is the parent of this file's folder. A path found in neither place is
    returned beside this file.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):
        if os.path.exists(os.path.join(folder, relativePath)):
            return os.path.join(folder, relativePath)
    return os.path.join(here, relativePath)


def _makePETITELibImportable() -> None:
    """Put the folder that holds PETITELib on sys.path (installed it already is; not in a source checkout)."""
    folder = os.path.dirname(extensionPath("PETITELib"))
    if folder not in sys.path:
        sys.path.append(folder)


_makePETITELibImportable()

from PETITELib import scanner_matching, slicer_bridge  # noqa: E402  (numpy only; torch-based parts are imported lazily)
from PETITELib.errors import Cancelled, PetiteError  # noqa: E402
from PETITELib.progress import CancelToken, ProgressCallback, ProgressEvent, event_from_json  # noqa: E402


class Dependency(NamedTuple):
    """A Python package PETITE needs inside Slicer: ``name`` (distribution name), ``minimum``
    version it works with, and ``pin``, the version installed when it is missing or too old
    (the one tested; see requirements-dev.txt). ``condition`` (Python version, exclusive upper
    bound) limits it to older Pythons."""

    name: str
    minimum: str
    pin: str
    belowPython: Optional[tuple] = None

    def requirement(self) -> str:
        return f"{self.name}=={self.pin}"


# torch comes only through the PyTorch extension (SlicerPyTorch chooses the build that fits the
# computer's GPU driver); PETITE never installs or replaces it. monai 1.6 needs torch 2.8.
TORCH_MINIMUM = "2.8"
# Everything else the `petite` process imports beyond what Slicer bundles (numpy, scipy). Each is
# installed with `pip install --no-deps NAME==PIN`: no dependency resolution, so torch is never
# touched. The list holds the packages' own dependencies too (nibabel: packaging, typing-extensions).
DEPENDENCIES = (
    Dependency("monai", "1.6.1", "1.6.1"),
    Dependency("einops", "0.6", "0.8.2"),
    Dependency("nibabel", "4.0", "5.4.2"),
    Dependency("packaging", "20", "26.4"),
    Dependency("typing-extensions", "4.6", "4.16.0", belowPython=(3, 13)),
    Dependency("safetensors", "0.4", "0.8.0"),
    Dependency("tqdm", "4.60", "4.70.1"),
    Dependency("psutil", "5.9", "7.2.2"),
    Dependency("pydicom", "3.0", "3.0.2"),
)

ADAPTER_AUTO = "auto"
ADAPTER_NONE = "none"
ADAPTER_SUFFIX = ".safetensors"
ADAPTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Colour maps (Slicer colour node IDs) of the error-map overlays.
SIGNED_ERROR_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
ABSOLUTE_ERROR_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileInferno.txt"
ERROR_WINDOW_PERCENTILE = 99.5  # error maps are windowed to this percentile of |error|
POLL_INTERVAL_MS = 200
KILL_TIMEOUT_S = 2.0  # Cancel: the process tree must be gone within this time
ICON_FILE = "Resources/Icons/PETITE.png"  # relative to the repository root, see extensionPath
BQ_PER_ML = ("Bq/ml", "UCUM", "Becquerels/milliliter")  # voxel-value units (code, scheme, meaning)
MODELS_FOLDER_SETTING = "PETITE/ModelsFolder"  # Slicer setting: the user's models folder
DEFAULT_MODELS_FOLDER = pathlib.Path.home() / ".PETITE"
OLD_CACHE_SUBFOLDER = "PETITE"  # models used to live in <Slicer cache>/PETITE (cleared by "Clear cache")
RESEARCH_NOTE = ("For research use only. The models shipped with PETITE were trained on simulated scans; "
                 "fine-tune an adapter on your own site's scans (Fine-tune) before trusting results on real "
                 "scans.")
SHIPPED_NOTE = ("shipped adapter '{name}': trained on simulated scans only (research use); "
                "fine-tune an adapter on your own scans")
# Runs in a `petite` process: which device `auto` picks there, and whether CUDA is available.
DEVICE_PROBE = ("import json, torch; from PETITELib.engine.devices import describe_device, select_device; "
                "print(json.dumps({'torch': torch.__version__, 'cuda': torch.cuda.is_available(), "
                "'auto': describe_device(select_device('auto'))}))")


#
# PETITE
#


class PETITE(ScriptedLoadableModule):
    """Module description shown in Slicer (title, category, help, acknowledgement)."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("PETITE")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Nuclear Medicine")]
        self.parent.dependencies = []
        self.parent.contributors = ["PETITE developers"]
        self.parent.helpText = _("""
Enhance short (reduced scan time) PET scans with a pre-trained network and a small per-scanner
adapter, compare the result with a long scan, and fine-tune adapters for new scanners with
parameter-efficient fine-tuning (PEFT). <b>For research use only:</b> the models shipped with
PETITE were trained on simulated scans; fine-tune an adapter on your own site's scans before
trusting results on real scans. Jobs run in a separate process; models you add or train are
kept in your models folder (default ~/.PETITE). See the
<a href="https://github.com/petite-pet/PETITE/blob/main/docs/slicer.md">documentation</a>.
""")
        self.parent.acknowledgementText = _("""
PETITE implements parameter-efficient fine-tuning for multi-scanner PET scan-time reduction.
It builds on MONAI and PyTorch; torch is installed through the SlicerPyTorch extension.
""")
        self.parent.icon = qt.QIcon(extensionPath(ICON_FILE))  # the base class looks beside PETITE.py only
        slicer.app.connect("startupCompleted()", registerSampleData)


#
# Sample data
#


def registerSampleData() -> None:
    """Register the sample pair shipped with PETITE (PETITELib.sample_data) with the Sample Data
    module, when it is present: the files are local, so ``SampleData.downloadSample`` loads them
    from a script as well as from the module's button."""
    try:
        import SampleData
    except ImportError:
        return
    from PETITELib import sample_data

    paths = sample_data.sample_pair_paths()
    SampleData.SampleDataLogic.registerCustomSampleDataCategory("PETITE", title=_("PETITE (simulated PET)"))
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="PETITE",
        sampleName=sample_data.SAMPLE_NAME,
        thumbnailFileName=extensionPath(ICON_FILE),
        uris=[path.as_uri() for path in paths],
        fileNames=[path.name for path in paths],
        nodeNames=list(sample_data.sample_node_names()),
        loadFileType="VolumeFile",
    )


#
# Parameters
#


class Device(enum.Enum):
    """Where the network runs (the PETITELib device name is resolved by PETITELogic.deviceName)."""

    AUTO = "auto"
    GPU = "gpu"
    CPU = "cpu"

    def label(self) -> str:
        return {"auto": _("auto"), "gpu": _("GPU"), "cpu": _("CPU")}[self.value]


class Overlay(enum.Enum):
    """Which error map is shown over the reconstruction after a comparison."""

    SIGNED = "signed"
    ABSOLUTE = "absolute"
    NONE = "none"

    def label(self) -> str:
        return {"signed": _("signed error (reconstruction - reference)"),
                "absolute": _("absolute error"), "none": _("none")}[self.value]


@parameterNodeWrapper
class PETITEParameterNode:
    """The panel's state, saved with the scene.

    inputVolume: short-scan volume to enhance. adapter: a user's or shipped adapter name, "auto" or
    "none" (kept as saved, even when that adapter is not installed here). baseModel: base model
    file ("": the only one in the models folder's base/, else the shipped base). device: auto/GPU/CPU.
    outputVolume: where the result goes (none: a new volume per run).
    reconstructedVolume, referenceVolume: the pair compared; overlay: error map shown;
    wholeVolumeMetrics: metrics over the whole volume instead of inside the head;
    signedErrorVolume, absoluteErrorVolume: the error maps of the last comparison (reused);
    metrics: the last comparison's metrics as JSON ({"reconstruction": {...}, "input": {...} or null}).
    cohortDir ("": none), peft, epochs (0: default), learningRate (0: default), adapterName: fine-tuning.
    The two paths are plain strings, shown by the panel itself: an unset path stays empty (a
    pathlib.Path field would read back as ".").
    """

    inputVolume: vtkMRMLScalarVolumeNode
    adapter: str = ADAPTER_AUTO
    baseModel: str = ""
    device: Device = Device.AUTO
    outputVolume: vtkMRMLScalarVolumeNode
    reconstructedVolume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode
    overlay: Overlay = Overlay.SIGNED
    wholeVolumeMetrics: bool = False
    signedErrorVolume: vtkMRMLScalarVolumeNode
    absoluteErrorVolume: vtkMRMLScalarVolumeNode
    metrics: str = ""
    cohortDir: str = ""
    peft: str = "petite"
    epochs: Annotated[int, WithinRange(0, 10000)] = 0
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    adapterName: str = ""


def optionalPath(path) -> Optional[pathlib.Path]:
    """A path parameter as a Path, or None when it is unset (empty, or "." as an unset pathlib.Path
    field of an older scene reads back)."""
    if path is None or str(path).strip() in ("", "."):
        return None
    return pathlib.Path(path)


def isScalarVolume(node) -> bool:
    """Whether ``node`` is a volume PETITE can read: a scalar volume with one component per voxel
    (vector, RGB, label-map and tensor volumes are subclasses of vtkMRMLScalarVolumeNode too)."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        return False
    if any(node.IsA(cls) for cls in ("vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode",
                                     "vtkMRMLTensorVolumeNode")):
        return False
    image = node.GetImageData()
    return image is not None and image.GetNumberOfScalarComponents() == 1


def versionTuple(text: str) -> tuple:
    """The release numbers of a version string, e.g. ``"2.13.0+cpu"`` -> (2, 13, 0)."""
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", str(text))
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def installedVersion(distribution: str) -> Optional[str]:
    """The installed version of a distribution (read from its metadata, nothing is imported), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


#
# Jobs in a separate process
#


def launchProcess(args: List[str], environment: Dict[str, str]):
    """Start ``args`` as a console process (the default launcher of :class:`PETITEProcessJob`):
    ``slicer.util.launchConsoleProcess`` (standard output and error merged into one pipe, no
    console window on Windows), in Slicer's startup environment inside the application, with
    ``environment`` added. Returns the ``subprocess.Popen``."""
    return slicer.util.launchConsoleProcess(args, useStartupEnvironment=hasattr(slicer, "app"),
                                            updateEnvironment=environment)


def killProcessTree(process, timeout: float = KILL_TIMEOUT_S) -> None:
    """Kill ``process`` (a ``subprocess.Popen``) and every process it started, and wait (at most
    ``timeout`` seconds) until each has ended: gone, or dead and waiting for its parent to collect
    its exit status (an orphan is collected by the system, which may take a moment). PythonSlicer
    is a launcher that starts the real Python as its child, so killing the direct child alone
    would leave the work running."""
    import psutil

    try:
        parent = psutil.Process(process.pid)
        tree = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            member.kill()

    def ended(member) -> bool:  # gone, or dead and waiting to be reaped by its new parent
        try:
            return member.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    deadline = time.monotonic() + timeout
    while not all(ended(member) for member in tree) and time.monotonic() < deadline:
        time.sleep(0.01)
    with contextlib.suppress(Exception):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))  # reap the direct child


def removeFolder(folder, timeout: float = KILL_TIMEOUT_S) -> None:
    """Delete ``folder`` and its contents; retried for up to ``timeout`` seconds (Windows keeps files
    of a killed process locked for a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            shutil.rmtree(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class PETITEProcessJob:
    """One ``petite`` command (or another Python snippet) run in a separate Python process.

    ``args`` are the arguments after the Python executable (e.g. ``["-m", "PETITELib.cli",
    "reconstruct", ..., "--progress-json"]``). The process works in ``workFolder``, a temporary
    folder this job owns: it is removed when the job ends, whatever the outcome. Its output is
    read line by line on a reader thread: ``--progress-json`` lines become :class:`ProgressEvent`
    objects (:meth:`events`), the other lines are kept (:attr:`outputLines`) and logged.
    ``finish(workFolder)`` runs on the thread that calls :meth:`finish` (the main thread) after a
    successful exit, and is where output nodes are made. :meth:`cancel` kills the process tree at
    once. :meth:`run` does the whole job synchronously, for the Python console and scripts.
    ``launcher(args, environment) -> Popen`` starts the process (default :func:`launchProcess`).
    """

    def __init__(self, name: str, args: Sequence[str], workFolder, finish: Callable[[pathlib.Path], object],
                 launcher: Optional[Callable] = None, python: Optional[str] = None):
        self.name = name
        self.args = [python or sys.executable, *[str(a) for a in args]]
        self.workFolder = pathlib.Path(workFolder)
        self.outputLines: List[str] = []
        self.returnCode: Optional[int] = None
        self.cancelled = False
        self._finish = finish
        self._launcher = launcher or launchProcess
        self._process = None
        self._reader: Optional[threading.Thread] = None
        self._queue: "queue.SimpleQueue" = queue.SimpleQueue()

    @staticmethod
    def environment() -> Dict[str, str]:
        """Environment the process gets on top of Slicer's: PETITELib importable, output unbuffered."""
        return {"PYTHONPATH": os.path.dirname(extensionPath("PETITELib")), "PYTHONUNBUFFERED": "1",
                "PYTHONIOENCODING": "utf-8"}

    def start(self) -> "PETITEProcessJob":
        """Start the process and its reader thread; return at once."""
        try:
            self._process = self._launcher(self.args, self.environment())
        except Exception:
            removeFolder(self.workFolder)
            raise
        self._reader = threading.Thread(target=self._read, name=f"PETITE {self.name} output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in iter(self._process.stdout.readline, ""):
            line = line.rstrip("\r\n")
            event = event_from_json(line)
            self._queue.put(event if event is not None else line)
        self.returnCode = self._process.wait()

    @property
    def running(self) -> bool:
        """True until the process has ended and all its output has been read."""
        return self._reader is not None and self._reader.is_alive()

    def cancel(self) -> None:
        """Kill the process and its children now (within :data:`KILL_TIMEOUT_S`) and remove the
        work folder: nothing it wrote is kept. :meth:`finish` then raises :class:`Cancelled`."""
        self.cancelled = True
        if self._process is not None:
            killProcessTree(self._process)
        if self._reader is not None:
            self._reader.join(KILL_TIMEOUT_S)
        removeFolder(self.workFolder)

    def events(self) -> List[ProgressEvent]:
        """The progress events read since the last call, oldest first; other output lines are
        logged and kept in :attr:`outputLines` on the way."""
        drained = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return drained
            if isinstance(item, ProgressEvent):
                drained.append(item)
            elif item.strip():
                self.outputLines.append(item)
                logging.info(f"PETITE {self.name}: {item}")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the process ended and its output was read (or ``timeout`` s passed); True when ended."""
        if self._reader is not None:
            self._reader.join(timeout)
        return not self.running

    def errorLine(self) -> str:
        """The process's last error line (its one-line PetiteError, or the last line of a traceback),
        or what its exit code says when it printed nothing."""
        for line in reversed(self.outputLines):
            text = line.strip()
            for prefix in ("petite: error: ", "petite: "):
                if text.startswith(prefix):
                    return text[len(prefix):]
            if text:
                return text
        return f"the {self.name} process ended with exit code {self.returnCode}"

    def finish(self):
        """After the process ended: its result through ``finish`` (then the work folder is removed),
        :class:`Cancelled` when cancelled, or PetiteError with its last error line when it failed."""
        if self.running:
            raise RuntimeError(f"PETITE {self.name} job has not ended")
        self.events()  # collect the last output lines
        try:
            if self.cancelled:
                raise Cancelled(f"{self.name} cancelled")
            if self.returnCode != 0:
                raise PetiteError(self.errorLine())
            return self._finish(self.workFolder)
        finally:
            removeFolder(self.workFolder)

    def run(self, progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None):
        """Do the whole job in the calling thread (console and scripts): start it, pass its progress
        events to ``progress``, kill it when ``cancel`` is cancelled, and return :meth:`finish`'s result."""
        if self._process is None:
            self.start()
        while not self.wait(0.1):
            for event in self.events():
                if progress is not None:
                    progress(event)
            if cancel is not None and cancel.cancelled and not self.cancelled:
                self.cancel()
        for event in self.events():
            if progress is not None:
                progress(event)
        return self.finish()


# How progress metrics are shown (label, format); others appear under their key.
METRIC_LABELS = {"loss": ("loss", "{:.4g}"), "val_psnr": ("val PSNR", "{:.2f} dB")}


def describeProgress(event: ProgressEvent) -> str:
    """One status line for a progress event, e.g. ``finetune: epoch 3/200, loss 0.0123, val PSNR 31.20 dB``.

    Uses the event's message (else step/total) and its known metrics; missing (None/NaN) values
    are left out.
    """
    head = event.message or (f"{event.step}/{event.total}" if event.total else "")
    parts = [f"{event.stage}: {head}" if head else event.stage]
    for key, value in event.metrics.items():
        if value is None or value != value:  # not measured yet
            continue
        label, fmt = METRIC_LABELS.get(key, (key, "{:.4g}"))
        parts.append(f"{label} {fmt.format(value)}")
    return ", ".join(parts)


#
# PETITEWidget
#


class PETITEWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the GUI into the parameter node, starts logic jobs, shows results."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._jobs: Dict[str, PETITEProcessJob] = {}
        self._jobWidgets: Dict[str, tuple] = {}  # job name -> (button, progress bar, status label, idle text)
        self._timer = None
        self._adapters: List[AdapterInfo] = []  # adapters on offer, read on Refresh
        self._devices: Optional[dict] = None  # what the device probe found
        self._installDialog = None

    def resourcePath(self, filename: str) -> str:
        """Path of ``Resources/<filename>``, installed or in a source checkout (see :func:`extensionPath`);
        Slicer's developer section uses it too (Edit UI)."""
        return extensionPath(os.path.join("Resources", filename))

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/PETITE.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = PETITELogic()
        moved = self.logic.migrateOldModels()
        if moved:
            logging.info(f"PETITE: moved {len(moved)} model file(s) from Slicer's cache to {self.logic.modelsDir}")

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollJobs)

        self.ui.researchNoteLabel.text = _(RESEARCH_NOTE)
        self.ui.metricsTable.setHorizontalHeaderLabels([_("PSNR (dB)"), _("SSIM"), _("NRMSE")])
        self.ui.metricsTable.setVerticalHeaderLabels([_("short scan"), _("reconstruction")])
        self.ui.metricsTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)
        for selector in (self.ui.inputVolumeSelector, self.ui.outputVolumeSelector, self.ui.compareVolumeSelector,
                         self.ui.referenceVolumeSelector):
            selector.hideChildNodeTypes = ["vtkMRMLVectorVolumeNode", "vtkMRMLLabelMapVolumeNode"]

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.modelsFolderButton.directory = str(self.logic.modelsDir)
        self.ui.modelsFolderButton.connect("directoryChanged(QString)", self.onModelsFolderChanged)
        self.ui.refreshAdaptersButton.connect("clicked(bool)", self.onRefreshAdapters)
        self.ui.baseModelPathLineEdit.connect("currentPathChanged(QString)", self.onBaseModelChanged)
        self.ui.cohortPathLineEdit.connect("currentPathChanged(QString)", self.onCohortChanged)
        self.ui.adapterComboBox.connect("currentIndexChanged(int)", self.onAdapterSelected)
        self.ui.peftComboBox.connect("currentTextChanged(QString)", self.onPeftChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        self.ui.wholeVolumeCheckBox.connect("toggled(bool)", self.onWholeVolumeToggled)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetuneButton)

        self.updateDependencyStatus()
        self.initializeParameterNode()
        self.onBaseModelChanged(self._parameterNode.baseModel)
        self.probeDevices()

    def cleanup(self) -> None:
        """Module unloaded: stop observing and kill running jobs."""
        self.cancelJobs()
        if self._timer is not None:
            self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)

    def onSceneStartClose(self, caller, event) -> None:
        """The scene closes: kill running jobs (their results belong to the old scene) and forget
        the panel's state (the new scene brings its own parameter node, metrics included)."""
        self.cancelJobs()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not isScalarVolume(self._parameterNode.inputVolume):
            firstVolumeNode = next((node for node in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                                    if isScalarVolume(node)), None)
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode: Optional[PETITEParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGUI)
            self._updateGUI()
        else:
            self._showMetrics({}, False)

    def _updateGUI(self, caller=None, event=None) -> None:
        """Parameter node changed: sync the widgets that are not bound to it, and enable buttons."""
        p = self._parameterNode
        if not p:
            return
        self._selectAdapter(p.adapter)
        if self.ui.peftComboBox.currentText != p.peft:
            wasBlocked = self.ui.peftComboBox.blockSignals(True)
            self.ui.peftComboBox.setEditText(p.peft)
            self.ui.peftComboBox.blockSignals(wasBlocked)
        for lineEdit, value in ((self.ui.baseModelPathLineEdit, p.baseModel), (self.ui.cohortPathLineEdit, p.cohortDir)):
            text = str(optionalPath(value) or "")
            if lineEdit.currentPath != text:
                wasBlocked = lineEdit.blockSignals(True)
                lineEdit.currentPath = text
                lineEdit.blockSignals(wasBlocked)

        self.ui.detectedScannerValueLabel.text = self._autoChoiceText(p.inputVolume, p.baseModel)
        reconstructing = "reconstruct" in self._jobs
        self.ui.applyButton.enabled = reconstructing or isScalarVolume(p.inputVolume)
        self.ui.compareButton.enabled = bool(isScalarVolume(p.reconstructedVolume)
                                             and isScalarVolume(p.referenceVolume))
        finetuning = "finetune" in self._jobs
        cohort = optionalPath(p.cohortDir)
        self.ui.finetuneButton.enabled = finetuning or bool(cohort and cohort.is_dir())
        self._showMetrics(PETITELogic.savedMetrics(p), p.wholeVolumeMetrics)

    def _selectAdapter(self, name: str) -> None:
        """Show the parameter node's adapter in the list; one saved with the scene but not installed
        here is listed as such (it is kept: Apply then says it is missing) rather than replaced."""
        combo = self.ui.adapterComboBox
        if combo.count == 0:  # not listed yet (set-up)
            return
        index = combo.findData(name)
        wasBlocked = combo.blockSignals(True)
        if index < 0:
            combo.addItem(_("{name} (not installed here)").format(name=name), name)
            index = combo.findData(name)
        combo.currentIndex = index
        combo.blockSignals(wasBlocked)

    def _autoChoiceText(self, volumeNode, base) -> str:
        """What ``auto`` sees in a volume: its scanner (or grid), and the adapter it would pick."""
        if not isScalarVolume(volumeNode):
            return _("select a scalar volume") if volumeNode else ""
        scanner = self.logic.detectScanner(volumeNode)
        if scanner:
            text = scanner_matching.describe_scanner(scanner_matching.table4_profile(scanner))
        else:
            shape, spacing = slicer_bridge.volume_grid(volumeNode)
            grid = scanner_matching.describe_scanner(scanner_matching.ScannerProfile(matrix=shape, spacing=spacing))
            text = _("not a known scanner ({grid})").format(grid=grid)
        try:
            choice = self.logic.chooseModels(volumeNode, ADAPTER_AUTO, base)
        except (PetiteError, ImportError) as exc:  # e.g. no base model, or dependencies not installed yet
            return text + "; " + _("auto: {problem}").format(problem=exc)
        if choice.adapter_shipped:
            return text + "; " + _("auto uses the ") + _(SHIPPED_NOTE).format(name=choice.adapter_name)
        if choice.adapter is not None:
            return text + "; " + _("auto uses your adapter '{name}'").format(name=choice.adapter_name)
        return text + "; " + _("auto: no adapter fits, base model only")

    # Set-up

    def updateDependencyStatus(self) -> None:
        lines = self.logic.dependencyReport()
        problems = [line for line in lines if not line.endswith(": ok")]
        self.ui.dependenciesStatusLabel.text = "\n".join(problems) if problems else _(
            "All required Python packages are installed (PyTorch {version}).").format(
            version=installedVersion("torch"))
        self.ui.setupCollapsibleButton.collapsed = not problems
        self.ui.installDependenciesButton.enabled = bool(problems)

    def ensureDependencies(self) -> bool:
        """True when every dependency is installed; else offer to install them and return False
        (the install runs in the background; the action can be repeated when it is done)."""
        if not self.logic.missingDependencies() and self.logic.torchProblem() is None:
            return True
        self.onInstallDependencies()
        return False

    def onInstallDependencies(self) -> None:
        problem = self.logic.torchProblem()
        if problem is not None:
            if not self._installTorch(problem):
                return
        missing = self.logic.missingDependencies()
        if not missing:
            self.updateDependencyStatus()
            return
        if not slicer.util.confirmOkCancelDisplay(
                _("PETITE needs these Python packages, which will now be downloaded and installed, each "
                  "at the version PETITE was tested with and without its dependencies (so the PyTorch that "
                  "the PyTorch extension installed is never replaced):\n\n{packages}").format(
                    packages="\n".join(d.requirement() for d in missing)), windowTitle=_("PETITE set-up")):
            return
        with errorsInDialog(_("PETITE set-up")):
            job = self.logic.installJob(missing)
            self._installDialog = slicer.util.createProgressDialog(
                windowTitle=_("PETITE set-up"), labelText=_("Installing {n} package(s)...").format(n=len(missing)),
                maximum=0)
            self._installDialog.setCancelButton(None)
            self._startJob("install", job, self.ui.installDependenciesButton, self.ui.installProgressBar,
                           self.ui.dependenciesStatusLabel)

    def _installTorch(self, problem: str) -> bool:
        """Install or upgrade PyTorch through the PyTorch extension (its own dialogs); True when done."""
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(_("{problem}. Install the 'PyTorch' extension from the Extensions Manager, "
                                       "restart Slicer, and try again.").format(problem=problem),
                                     windowTitle=_("PETITE set-up"))
            return False
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if installedVersion("torch") is not None:
            slicer.util.errorDisplay(_("{problem}. Upgrade it in the 'PyTorch Utils' module (version requirement "
                                       ">={minimum}), restart Slicer, and try again.").format(
                                         problem=problem, minimum=TORCH_MINIMUM), windowTitle=_("PETITE set-up"))
            return False
        if torchLogic.installTorch(askConfirmation=True, torchVersionRequirement=f">={TORCH_MINIMUM}") is None:
            return False
        return self.logic.torchProblem() is None

    def _onInstallDone(self, result) -> None:
        self.updateDependencyStatus()
        self.onBaseModelChanged(self._parameterNode.baseModel if self._parameterNode else "")
        self.probeDevices()

    def probeDevices(self) -> None:
        """Ask a `petite` process which device `auto` uses and whether CUDA is available (in the
        background; shown under Set-up and next to Device)."""
        if "devices" in self._jobs or self.logic.missingDependencies() or self.logic.torchProblem():
            return
        self.ui.devicesValueLabel.text = _("checking...")
        self._startJob("devices", self.logic.deviceProbeJob(), None, None, None)

    def _onDevicesDone(self, devices: dict) -> None:
        self._devices = devices
        cuda = _("CUDA available") if devices["cuda"] else _("CUDA not available")
        self.ui.devicesValueLabel.text = _("PyTorch {torch}, {cuda}; auto uses {auto}").format(
            torch=devices["torch"], cuda=cuda, auto=devices["auto"])

    # Models folder

    def onModelsFolderChanged(self, folder: str) -> None:
        """A new models folder: remember it in Slicer's settings and list its models."""
        if not folder or pathlib.Path(folder) == self.logic.modelsDir:
            return
        self.logic.modelsDir = pathlib.Path(folder)
        qt.QSettings().setValue(MODELS_FOLDER_SETTING, folder)
        self.onRefreshAdapters()

    # Reconstruct

    def onRefreshAdapters(self) -> None:
        """Read the models folder (and the shipped models) again and list the adapters."""
        self._listAdapters(self._parameterNode.baseModel if self._parameterNode else "")

    def _listAdapters(self, base) -> None:
        """Fill the adapter list with the adapters on offer for the base model ``base`` ("": the default)."""
        try:
            self._adapters = self.logic.availableAdapters(base)
        except ImportError:  # dependencies not installed yet: nothing can be read
            self._adapters = []
        combo = self.ui.adapterComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("auto (matched to the volume's scanner)"), ADAPTER_AUTO)
        combo.addItem(_("none (base model only)"), ADAPTER_NONE)
        for adapter in self._adapters:
            combo.addItem(adapter.label(), adapter.name)
        combo.blockSignals(wasBlocked)
        self._updateGUI()

    def onBaseModelChanged(self, path: str = "") -> None:
        """List the PEFT specs that suit the backbone of the base model ``path`` (or the default one),
        and the adapters that fit it (shipped adapters fit the shipped base only)."""
        if self._parameterNode and self._parameterNode.baseModel != str(optionalPath(path) or ""):
            self._parameterNode.baseModel = str(optionalPath(path) or "")
        self._listAdapters(path)
        try:
            specs = self.logic.peftSpecs(self.logic.chooseModels(None, ADAPTER_NONE, path).base)
        except (PetiteError, ImportError):  # no base model, or dependencies not installed yet
            specs = ["petite"]
        combo = self.ui.peftComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for spec in specs:
            combo.addItem(spec)
        combo.setEditText(self._parameterNode.peft if self._parameterNode else specs[0])
        combo.blockSignals(wasBlocked)

    def onCohortChanged(self, path: str) -> None:
        if self._parameterNode and self._parameterNode.cohortDir != str(optionalPath(path) or ""):
            self._parameterNode.cohortDir = str(optionalPath(path) or "")

    def onAdapterSelected(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.adapter = self.ui.adapterComboBox.itemData(index)

    def onApplyButton(self) -> None:
        if "reconstruct" in self._jobs:
            self._jobs.pop("reconstruct").cancel()
            self._endJob("reconstruct", _("Cancelled."))
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with errorsInDialog(_("Reconstruction failed."), self.ui.reconstructStatusLabel):
            device = self.logic.deviceName(p.device.value, self._devices)
            job = self.logic.reconstructJob(p.inputVolume, adapter=p.adapter, base=optionalPath(p.baseModel),
                                            device=device, outputVolumeNode=p.outputVolume)
            self._startJob("reconstruct", job, self.ui.applyButton, self.ui.reconstructProgressBar,
                           self.ui.reconstructStatusLabel)

    def _onReconstructDone(self, outputNode) -> None:
        if self._parameterNode:
            self._parameterNode.reconstructedVolume = outputNode
        slicer.util.setSliceViewerLayers(background=outputNode, foreground=None, fit=True)
        self.ui.reconstructStatusLabel.text = _("Done: {name}. {note}").format(
            name=outputNode.GetName(), note=outputNode.GetAttribute("PETITE.models") or "")

    # Compare

    def onCompareButton(self) -> None:
        p = self._parameterNode
        with errorsInDialog(_("Comparison failed.")):
            with slicer.util.WaitCursor():
                self.logic.compareInScene(p)
            self.onOverlayChanged(self.ui.overlayComboBox.currentIndex)

    def onOverlayChanged(self, index: int) -> None:
        """Show the chosen error map (combo items are in Overlay order) over the reconstruction."""
        p = self._parameterNode
        if not p or not p.reconstructedVolume or index < 0:
            return
        overlay = list(Overlay)[index]
        foreground = {Overlay.SIGNED: p.signedErrorVolume, Overlay.ABSOLUTE: p.absoluteErrorVolume}.get(overlay)
        for node in (p.signedErrorVolume, p.absoluteErrorVolume):
            PETITELogic.showColorLegend(node, node is foreground)
        slicer.util.setSliceViewerLayers(background=p.reconstructedVolume, foreground=foreground,
                                         foregroundOpacity=0.5 if foreground else 0.0)

    def onWholeVolumeToggled(self, checked: bool) -> None:
        if self._parameterNode:
            self._showMetrics(PETITELogic.savedMetrics(self._parameterNode), checked)

    def _showMetrics(self, metrics: dict, wholeVolume: bool) -> None:
        suffix = "_whole" if wholeVolume else ""
        for row, key in enumerate(("input", "reconstruction")):
            values = metrics.get(key)
            for column, (name, fmt) in enumerate((("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("nrmse", "{:.4f}"))):
                text = fmt.format(values[name + suffix]) if values else "-"
                self.ui.metricsTable.setItem(row, column, qt.QTableWidgetItem(text))

    # Fine-tune

    def onPeftChanged(self, text: str) -> None:
        if self._parameterNode and self._parameterNode.peft != text:
            self._parameterNode.peft = text

    def onFinetuneButton(self) -> None:
        if "finetune" in self._jobs:
            self._jobs.pop("finetune").cancel()
            self._endJob("finetune", _("Cancelled."))
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with errorsInDialog(_("Fine-tuning failed."), self.ui.finetuneStatusLabel):
            job = self.logic.finetuneJob(optionalPath(p.cohortDir), peft=p.peft, base=optionalPath(p.baseModel),
                                         adapterName=p.adapterName or None, epochs=p.epochs or None,
                                         lr=p.learningRate or None,
                                         device=self.logic.deviceName(p.device.value, self._devices))
            self._startJob("finetune", job, self.ui.finetuneButton, self.ui.finetuneProgressBar,
                           self.ui.finetuneStatusLabel)

    def _onFinetuneDone(self, adapterPath) -> None:
        name = pathlib.Path(adapterPath).name[:-len(ADAPTER_SUFFIX)]
        self.onRefreshAdapters()
        if self._parameterNode:
            self._parameterNode.adapter = name
        self.ui.finetuneStatusLabel.text = _("New adapter '{name}' saved to {path}.").format(
            name=name, path=adapterPath)

    # Jobs

    def _startJob(self, name: str, job: PETITEProcessJob, button, progressBar, statusLabel) -> None:
        self._jobs[name] = job.start()
        self._jobWidgets[name] = (button, progressBar, statusLabel, button.text if button else "")
        if button:
            button.text = _("Cancel")
        if progressBar:
            progressBar.value = 0
            progressBar.visible = True
        if statusLabel:
            statusLabel.text = _("Starting...")
        self._timer.start()
        self._updateGUI()

    def _endJob(self, name: str, status: Optional[str] = None) -> None:
        """Put a job's widgets back to idle (and show ``status``)."""
        button, progressBar, statusLabel, idleText = self._jobWidgets.pop(name)
        if button:
            button.text = idleText
        if progressBar:
            progressBar.visible = False
        if statusLabel and status is not None:
            statusLabel.text = status
        if name == "install" and self._installDialog is not None:
            self._installDialog.close()
            self._installDialog = None
        self._updateGUI()

    def cancelJobs(self) -> None:
        """Kill every running job (scene closing, module unloaded)."""
        for name in list(self._jobs):
            self._jobs.pop(name).cancel()
            self._endJob(name, _("Cancelled."))

    def _pollJobs(self) -> None:
        """QTimer tick (main thread): show progress, finish ended jobs."""
        for name, job in list(self._jobs.items()):
            _button, progressBar, statusLabel, _idleText = self._jobWidgets[name]
            events = job.events()
            if events and progressBar:
                progressBar.value = int(round(100 * events[-1].fraction))
            if events and statusLabel:
                statusLabel.text = describeProgress(events[-1])
            if name == "install" and job.outputLines and self._installDialog is not None:
                self._installDialog.labelText = job.outputLines[-1][:120]
            if job.running:
                continue
            del self._jobs[name]
            self._endJob(name)
            if name == "devices":  # informative only: a failure is shown where the answer would be
                try:
                    self._onDevicesDone(job.finish())
                except (PetiteError, Cancelled, ValueError, IndexError) as exc:
                    self.ui.devicesValueLabel.text = _("unknown ({problem})").format(problem=exc)
                continue
            done = {"reconstruct": self._onReconstructDone, "finetune": self._onFinetuneDone,
                    "install": self._onInstallDone}[name]
            with errorsInDialog(_("PETITE {name} failed.").format(name=name), statusLabel):
                done(job.finish())
        if not self._jobs:
            self._timer.stop()


@contextlib.contextmanager
def errorsInDialog(title: str, statusLabel=None):
    """Show what goes wrong in a block: Cancelled as a status line, PetiteError as its one line in a
    dialog, anything else with its type in a dialog (traceback under "Show Details" and in the log)."""
    try:
        yield
    except Cancelled:
        if statusLabel is not None:
            statusLabel.text = _("Cancelled.")
    except PetiteError as exc:
        if statusLabel is not None:
            statusLabel.text = str(exc)
        slicer.util.errorDisplay(str(exc), windowTitle=title)
    except Exception as exc:
        details = traceback.format_exc()
        logging.error(details)
        if statusLabel is not None:
            statusLabel.text = f"{type(exc).__name__}: {exc}"
        slicer.util.errorDisplay(f"{title}\n\n{type(exc).__name__}: {exc}", windowTitle=title, detailedText=details)


#
# PETITELogic
#


class AdapterInfo(NamedTuple):
    """An adapter the panel offers: ``name`` (file stem, or the shipped name), ``path``, ``spec`` (its
    PEFT spec; "full" for a fully fine-tuned model), ``description`` (one line: its scanner, or what
    is wrong with the file), ``shipped`` (True: from the model zoo shipped with PETITE, trained on
    simulated scans; False: the user's, in the models folder) and ``metrics`` (shipped adapters:
    their held-out scores as one line, e.g. "held-out PSNR 30.1 dB vs base 29.5 dB"; else empty)."""

    name: str
    path: pathlib.Path
    spec: str
    description: str
    shipped: bool = False
    metrics: str = ""

    def label(self) -> str:
        """The adapter's line in the panel's list, e.g. ``scanner4 - scanner 4, ... [petite]
        (shipped, trained on simulated scans: held-out PSNR 30.1 dB vs base 29.5 dB)``."""
        text = f"{self.name} - {self.description} [{self.spec}]"
        if self.shipped:
            text += " (" + ": ".join(part for part in (_("shipped, trained on simulated scans"), self.metrics)
                                     if part) + ")"
        return text


def adapterInfo(entry) -> AdapterInfo:
    """The panel's view of an adapter entry of :func:`PETITELib.zoo.available_adapters`."""
    record = entry.record
    if record.get("problem"):
        return AdapterInfo(entry.name, entry.path, "", _("unreadable: {problem}").format(problem=record["problem"]))
    shipped = record.get("source") != "user"
    if record.get("spec") == "full":
        description = f"{record.get('scanner_name') or _('unknown scanner')} ({_('full fine-tuning')})"
    else:
        description = str(record.get("description") or "") if shipped else ""
        description = description or scanner_matching.describe_scanner(scanner_matching.scanner_profile(entry.scanner))
    return AdapterInfo(entry.name, entry.path, str(record.get("spec") or ""), description, shipped,
                       shippedMetricsText(record) if shipped else "")


def shippedMetricsText(record) -> str:
    """One line of a shipped adapter's held-out scores from its manifest record, e.g.
    "held-out PSNR 30.1 dB vs base 29.5 dB" (adapter, then base alone); empty when not recorded."""
    metrics = record.get("metrics") if isinstance(record, dict) else None

    def psnr(method: str) -> Optional[float]:
        try:
            value = float(metrics[method]["mean"]["psnr"])
        except (KeyError, TypeError, ValueError):
            return None
        return value if value == value else None  # NaN: not measured

    if not isinstance(metrics, dict) or psnr("adapter") is None:
        return ""
    text = _("held-out PSNR {psnr:.1f} dB").format(psnr=psnr("adapter"))
    if psnr("no-ft") is not None:
        text += " " + _("vs base {psnr:.1f} dB").format(psnr=psnr("no-ft"))
    return text


class PETITELogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, without Qt: usable from the Python console and in scripts.

    Volumes go through :mod:`PETITELib.slicer_bridge` (the one MRML <-> array conversion); input
    nodes are never modified. Models are chosen by :mod:`PETITELib.zoo.selection` from the user's
    models folder and the zoo shipped with PETITE. Reconstruct and Fine-tune run ``petite`` in a
    separate process: ``reconstructJob``/``finetuneJob`` return a :class:`PETITEProcessJob` to
    start in the background (the panel does), ``reconstruct``/``finetune`` run it to the end and
    take ``progress``/``cancel`` like PETITELib.

    modelsDir: the user's folder, holding ``adapters/*.safetensors`` (new adapters from
    Fine-tune go there) and ``base/`` (its only file is the default base model); default
    ``$PETITE_MODELS_DIR``, else the folder chosen in the panel (Slicer setting
    ``PETITE/ModelsFolder``), else ``~/.PETITE``. It is not in Slicer's cache, which "Clear
    cache" empties. processLauncher: ``(args, environment) -> subprocess.Popen`` starting the
    job processes (default :func:`launchProcess`; tests may pass their own).
    """

    def __init__(self, modelsDir=None, processLauncher: Optional[Callable] = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.modelsDir = pathlib.Path(modelsDir) if modelsDir else self.defaultModelsDir()
        self.processLauncher = processLauncher

    @staticmethod
    def defaultModelsDir() -> pathlib.Path:
        """``$PETITE_MODELS_DIR``, else the folder remembered in Slicer's settings, else ``~/.PETITE``."""
        if os.environ.get("PETITE_MODELS_DIR"):
            return pathlib.Path(os.environ["PETITE_MODELS_DIR"])
        if hasattr(slicer, "app"):
            saved = slicer.util.settingsValue(MODELS_FOLDER_SETTING, "")
            if saved:
                return pathlib.Path(saved)
        return DEFAULT_MODELS_FOLDER

    @property
    def adaptersDir(self) -> pathlib.Path:
        from PETITELib.zoo.selection import USER_ADAPTER_FOLDER

        return self.modelsDir / USER_ADAPTER_FOLDER

    @property
    def baseModelsDir(self) -> pathlib.Path:
        from PETITELib.zoo.selection import USER_BASE_FOLDER

        return self.modelsDir / USER_BASE_FOLDER

    def getParameterNode(self) -> PETITEParameterNode:
        return PETITEParameterNode(super().getParameterNode())

    def migrateOldModels(self, oldFolder=None) -> List[pathlib.Path]:
        """Move the models an earlier PETITE kept in Slicer's cache folder (``<cache>/PETITE``, or
        ``oldFolder``) into :attr:`modelsDir`, once: each ``base/`` and ``adapters/`` file not yet
        present there is moved (a name already taken stays where it is, and is logged). Returns
        the new paths; [] when there is nothing to move."""
        if oldFolder is None:
            if not hasattr(slicer, "app"):
                return []
            oldFolder = pathlib.Path(slicer.app.cachePath) / OLD_CACHE_SUBFOLDER
        oldFolder = pathlib.Path(oldFolder)
        moved = []
        for target in (self.baseModelsDir, self.adaptersDir):
            source = oldFolder / target.name
            for path in sorted(source.glob("*" + ADAPTER_SUFFIX)) if source.is_dir() else []:
                destination = target / path.name
                if destination.exists() or _samePath(source, target):
                    logging.warning(f"PETITE: {path} not moved: {destination} exists")
                    continue
                target.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(destination))
                moved.append(destination)
        return moved

    # Set-up

    @staticmethod
    def torchProblem() -> Optional[str]:
        """None when PyTorch is installed at :data:`TORCH_MINIMUM` or later; else what is wrong."""
        version = installedVersion("torch")
        if version is None:
            return _("PyTorch is not installed")
        if versionTuple(version) < versionTuple(TORCH_MINIMUM):
            return _("PyTorch {version} is installed; PETITE needs {minimum} or later").format(
                version=version, minimum=TORCH_MINIMUM)
        return None

    @staticmethod
    def missingDependencies(dependencies: Sequence[Dependency] = DEPENDENCIES) -> List[Dependency]:
        """The dependencies (other than torch) that are not installed, or older than their minimum."""
        missing = []
        for dependency in dependencies:
            if dependency.belowPython is not None and sys.version_info[:2] >= dependency.belowPython:
                continue
            version = installedVersion(dependency.name)
            if version is None or versionTuple(version) < versionTuple(dependency.minimum):
                missing.append(dependency)
        return missing

    @classmethod
    def dependencyReport(cls) -> List[str]:
        """One line per dependency: ``name: ok``, or what is missing or too old."""
        lines = [f"torch: {cls.torchProblem() or 'ok'}"]
        missing = cls.missingDependencies()
        for dependency in DEPENDENCIES:
            version = installedVersion(dependency.name)
            if dependency not in missing:
                lines.append(f"{dependency.name}: ok")
            elif version is None:
                lines.append(_("{name}: not installed (needs {minimum} or later)").format(
                    name=dependency.name, minimum=dependency.minimum))
            else:
                lines.append(_("{name}: {version} is installed, needs {minimum} or later").format(
                    name=dependency.name, version=version, minimum=dependency.minimum))
        return lines

    @staticmethod
    def installArguments(dependencies: Sequence[Dependency]) -> List[str]:
        """``python -m pip`` arguments installing ``dependencies`` at their pins without resolving
        any dependency (so torch is never installed or replaced)."""
        return ["-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                *[d.requirement() for d in dependencies]]

    def installJob(self, dependencies: Sequence[Dependency]) -> PETITEProcessJob:
        """A background job installing ``dependencies`` with pip (see :meth:`installArguments`)."""
        def finish(folder):
            import importlib

            importlib.invalidate_caches()
            return [d.name for d in dependencies]

        return PETITEProcessJob("install", self.installArguments(dependencies), tempfile.mkdtemp(prefix="PETITE-"),
                                finish, self.processLauncher)

    def deviceProbeJob(self) -> PETITEProcessJob:
        """A background job reporting ``{"torch": version, "cuda": bool, "auto": device}`` as
        seen by a `petite` process (:data:`DEVICE_PROBE`)."""
        job = PETITEProcessJob("devices", ["-c", DEVICE_PROBE], tempfile.mkdtemp(prefix="PETITE-"),
                               lambda folder: json.loads(job.outputLines[-1]), self.processLauncher)
        return job

    @staticmethod
    def deviceName(device: str, devices: Optional[dict] = None) -> str:
        """PETITELib device name for a panel choice: auto, gpu (CUDA, or MPS on macOS) or cpu.
        With ``devices`` (what :meth:`deviceProbeJob` found), GPU without CUDA is refused here,
        in the panel's words."""
        if device == "gpu":
            if sys.platform == "darwin":
                return "mps"
            if devices is not None and not devices.get("cuda"):
                raise PetiteError(_("Device GPU: CUDA is not available on this computer (PyTorch {torch}); "
                                    "choose CPU or auto").format(torch=devices.get("torch")))
            return "cuda"
        return device

    @staticmethod
    def peftSpecs(base=None) -> List[str]:
        """PEFT specs to offer: the ``petite`` preset, each single method, ``full`` and, when the
        base model's backbone is known, the paper's feasible mixes for it (Tables 6 and 7)."""
        from PETITELib import peft

        backbone = PETITELogic.baseBackbone(base) if base else None
        if backbone is None:
            return ["petite", *peft.METHODS, "full"]
        entries = peft.method_catalogue(backbone)
        return [e.spec for e in entries if e.kind == "preset"] + [e.spec for e in entries if e.kind != "preset"]

    @staticmethod
    def baseBackbone(base) -> Optional[str]:
        """Backbone name ("unetr", "cvtgan") recorded in a base-model file, or None if unreadable."""
        from PETITELib.peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
        from PETITELib.peft.safetensors_io import read_metadata

        try:
            return read_metadata(base, BASE_FORMAT, BASE_FORMAT_VERSION).get("backbone")
        except PetiteError:
            return None

    # Models: through PETITELib.zoo.selection

    def chooseModels(self, volumeNode, adapter: str = ADAPTER_AUTO, base=None):
        """The files ``adapter`` ("auto", "none", a user's or shipped adapter name, or a file) and
        ``base`` (None or "": the default) stand for with this volume, as
        :func:`PETITELib.zoo.choose_models` resolves them with the models folder; shipped files are
        not hashed here (the process that uses them checks them)."""
        from PETITELib.zoo import choose_models

        shape = spacing = None
        dicom = {}
        if volumeNode is not None:
            shape, spacing = slicer_bridge.volume_grid(volumeNode)
            dicom = slicer_bridge.dicom_scanner_info(volumeNode)
        return choose_models(str(optionalPath(base) or "") or None, adapter or ADAPTER_NONE, shape=shape,
                             spacing=spacing, dicom=dicom, user=self.modelsDir, verify=False)

    def availableAdapters(self, base=None) -> List[AdapterInfo]:
        """The adapters on offer with ``base`` (None or "": the default base): the user's, then the
        shipped ones made for that base (see :func:`PETITELib.zoo.available_adapters`)."""
        from PETITELib.zoo import available_adapters

        return [adapterInfo(entry) for entry in
                available_adapters(str(optionalPath(base) or "") or None, user=self.modelsDir)]

    def detectScanner(self, volumeNode):
        """The Table-4 scanner (:class:`PETITELib.data.scanners.Scanner`) a volume fits, or None
        (see :func:`PETITELib.scanner_matching.detect_scanner`; DICOM names count when present)."""
        shape, spacing = slicer_bridge.volume_grid(volumeNode)
        return scanner_matching.detect_scanner(shape, spacing, slicer_bridge.dicom_scanner_info(volumeNode))

    def _cli(self, command: Sequence[str]) -> List[str]:
        return ["-m", "PETITELib.cli", *[str(part) for part in command], "--progress-json"]

    # Reconstruct

    def reconstructJob(self, inputVolumeNode, adapter: str = ADAPTER_AUTO, base=None, device: str = "auto",
                       outputVolumeNode=None) -> PETITEProcessJob:
        """Prepare a reconstruction; :meth:`PETITEProcessJob.start` it or :meth:`PETITEProcessJob.run` it.

        The input is written (NIfTI) into a new temporary folder now; the job runs ``petite
        reconstruct`` on it there. base: a base-model file (default: the models folder's only base,
        else the shipped one); adapter: "auto", "none", an adapter name or file (see
        :meth:`chooseModels`). The job's result is the output volume node: ``outputVolumeNode``, or
        a new node "<input> PETITE", with the input's IJK-to-RAS matrix, parent transform and units
        (not the file's); its attribute ``PETITE.models`` says which models were used.
        """
        from PETITELib.nifti_io import load_volume, save_volume

        if inputVolumeNode is None:
            raise PetiteError(_("no input volume selected"))
        if not isScalarVolume(inputVolumeNode):
            raise PetiteError(_("input volume '{name}': not a scalar volume (one value per voxel)").format(
                name=inputVolumeNode.GetName()))
        if outputVolumeNode is not None and outputVolumeNode is inputVolumeNode:
            raise PetiteError(f"output volume '{outputVolumeNode.GetName()}' is the input: choose another "
                              "output (input volumes are never modified)")
        choice = self.chooseModels(inputVolumeNode, adapter, base)
        note = self.modelsNote(choice)
        volume = slicer_bridge.read_volume(inputVolumeNode)
        folder = pathlib.Path(tempfile.mkdtemp(prefix="PETITE-"))
        try:
            inputPath = save_volume(folder / "input.nii.gz", volume.array, volume.affine)
        except Exception:
            removeFolder(folder)
            raise
        outputPath = folder / "output.nii.gz"

        def finish(folder):
            array = load_volume(outputPath).array
            if outputVolumeNode is None:
                node = slicer_bridge.new_volume_node(slicer.mrmlScene, f"{inputVolumeNode.GetName()} PETITE",
                                                     array, like=inputVolumeNode)
            else:
                node = outputVolumeNode
                slicer_bridge.write_volume(node, array, like=inputVolumeNode)
                if node.GetDisplayNode() is None:
                    node.CreateDefaultDisplayNodes()
            node.SetAttribute("PETITE.models", note)
            return node

        command = ["reconstruct", inputPath, "-o", outputPath, "--base", choice.base,
                   "--adapter", choice.adapter or ADAPTER_NONE, "--device", device]
        return PETITEProcessJob("reconstruct", self._cli(command), folder, finish, self.processLauncher)

    @staticmethod
    def modelsNote(choice) -> str:
        """One line on the models a reconstruction uses, saying so when it is a shipped adapter
        (trained on simulated scans only)."""
        if choice.adapter is None:
            return _("base model only (no adapter)")
        if choice.adapter_shipped:
            return _("Uses the ") + _(SHIPPED_NOTE).format(name=choice.adapter_name) + "."
        return _("adapter '{name}'").format(name=choice.adapter_name)

    def reconstruct(self, inputVolumeNode, adapter: str = ADAPTER_AUTO, base=None, device: str = "auto",
                    outputVolumeNode=None, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None):
        """Enhance a short-scan volume node; returns the output node (see :meth:`reconstructJob`)."""
        return self.reconstructJob(inputVolumeNode, adapter=adapter, base=base, device=device,
                                   outputVolumeNode=outputVolumeNode).run(progress, cancel)

    # Compare

    def compare(self, volumeNode, referenceVolumeNode, errorMaps: bool = True,
                signedErrorNode=None, absoluteErrorNode=None) -> dict:
        """Metrics of ``volumeNode`` against ``referenceVolumeNode`` (same voxel grid), and error maps.

        Returns ``{"metrics": {...}, "signedError": node, "absoluteError": node}``. The metrics
        are :func:`PETITELib.metrics.compare_volumes`'s: psnr (dB), ssim, nrmse inside the head
        of the reference, and the same with ``_whole`` over the whole volume. The error maps
        (volume - reference, and its absolute value; input units) go into the given nodes or new
        ones, with the volume's geometry, a colour map and a colour legend. With
        ``errorMaps=False`` both are None.
        """
        from PETITELib import metrics as petite_metrics
        from PETITELib.data.cohort import geometry_problem

        if volumeNode is None or referenceVolumeNode is None:
            raise PetiteError("select both a volume and a reference volume to compare")
        volume = slicer_bridge.read_volume(volumeNode)
        reference = slicer_bridge.read_volume(referenceVolumeNode)
        problem = geometry_problem(pathlib.Path(volumeNode.GetName()), volume,
                                   pathlib.Path(referenceVolumeNode.GetName()), reference)
        if problem:
            raise PetiteError(f"{problem}: the two volumes must be on the same voxel grid (resample one onto "
                              "the other first, e.g. with the Resample Scalar/Vector/DWI Volume module)")
        result = {"metrics": petite_metrics.compare_volumes(volume.array, reference.array, spacing=reference.spacing,
                                                            name=referenceVolumeNode.GetName()),
                  "signedError": None, "absoluteError": None}
        if errorMaps:
            signed, absolute = petite_metrics.error_maps(volume.array, reference.array)
            name = volumeNode.GetName()
            result["signedError"] = self._errorMapNode(signedErrorNode, f"{name} signed error", signed, volumeNode,
                                                       SIGNED_ERROR_COLOR_NODE_ID, symmetric=True)
            result["absoluteError"] = self._errorMapNode(absoluteErrorNode, f"{name} absolute error", absolute,
                                                         volumeNode, ABSOLUTE_ERROR_COLOR_NODE_ID, symmetric=False)
        return result

    def compareInScene(self, parameters: PETITEParameterNode) -> dict:
        """The panel's Compare: error maps of the parameter node's reconstruction against its
        reference (reusing its error-map nodes), and the metrics of the reconstruction and of the
        short scan (when on the same grid), saved in the parameter node (so with the scene)."""
        result = self.compare(parameters.reconstructedVolume, parameters.referenceVolume,
                              signedErrorNode=parameters.signedErrorVolume,
                              absoluteErrorNode=parameters.absoluteErrorVolume)
        saved = {"reconstruction": result["metrics"], "input": None}
        short = parameters.inputVolume
        if isScalarVolume(short) and short is not parameters.reconstructedVolume:
            try:
                saved["input"] = self.compare(short, parameters.referenceVolume, errorMaps=False)["metrics"]
            except PetiteError as exc:  # e.g. the short scan is on another grid: leave its row empty
                logging.info(f"PETITE: no metrics for the short scan: {exc}")
        with slicer.util.NodeModify(parameters.parameterNode):
            parameters.signedErrorVolume = result["signedError"]
            parameters.absoluteErrorVolume = result["absoluteError"]
            parameters.metrics = json.dumps(saved)
        return saved

    @staticmethod
    def savedMetrics(parameters: PETITEParameterNode) -> dict:
        """The metrics of the last comparison saved in the parameter node ({} when none)."""
        try:
            return dict(json.loads(parameters.metrics)) if parameters.metrics else {}
        except (ValueError, TypeError):
            return {}

    @staticmethod
    def _errorMapNode(node, name: str, array, like, colorNodeID: str, symmetric: bool):
        """Write an (x, y, z) error map into ``node`` (or a new one) with a colour map, window and legend."""
        import numpy as np

        if node is None:
            node = slicer_bridge.new_volume_node(slicer.mrmlScene, name, array, like=like)
        else:
            slicer_bridge.write_volume(node, array, like=like)
            if node.GetDisplayNode() is None:
                node.CreateDefaultDisplayNodes()
        limit = float(np.percentile(np.abs(array), ERROR_WINDOW_PERCENTILE)) or float(np.max(np.abs(array))) or 1.0
        display = node.GetDisplayNode()
        display.SetAndObserveColorNodeID(colorNodeID)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(-limit if symmetric else 0.0, limit)
        legend = PETITELogic.colorLegend(node)
        legend.SetTitleText(f"{name} ({PETITELogic.unitsText(like)})")
        return node

    @staticmethod
    def unitsText(node) -> str:
        """The voxel-value units of a volume node (e.g. "Bq/ml"), or "input units"."""
        units = node.GetVoxelValueUnits() if node is not None else None
        return units.GetCodeValue() if units is not None and units.GetCodeValue() else "input units"

    @staticmethod
    def colorLegend(node):
        """The colour legend display node of a volume node (made, hidden, the first time): the
        legend of an error map, shown with it in the slice views."""
        for index in range(node.GetNumberOfDisplayNodes()):
            display = node.GetNthDisplayNode(index)
            if display is not None and display.IsA("vtkMRMLColorLegendDisplayNode"):
                return display
        legend = node.GetScene().AddNewNodeByClass("vtkMRMLColorLegendDisplayNode")
        legend.SetAndObservePrimaryDisplayNode(node.GetDisplayNode())
        legend.SetVisibility(False)
        node.AddAndObserveDisplayNodeID(legend.GetID())
        return legend

    @staticmethod
    def showColorLegend(node, visible: bool) -> None:
        """Show or hide the colour legend of an error-map node (none: nothing to do)."""
        if node is not None:
            PETITELogic.colorLegend(node).SetVisibility(visible)

    # Fine-tune

    def finetuneJob(self, cohortDir, peft: str = "petite", base=None, adapterName: Optional[str] = None,
                    epochs: Optional[int] = None, lr: Optional[float] = None, seed: int = 0,
                    device: str = "auto", **settings) -> PETITEProcessJob:
        """Prepare fine-tuning of a new adapter on a cohort folder; the job's result is the adapter path.

        base: the base model to adapt (default: the models folder's only base, else the shipped
        one). ``petite finetune`` writes the adapter into the job's temporary folder; it is moved to
        ``<adaptersDir>/<adapterName>.safetensors`` (default name: the cohort folder's name and the
        PEFT spec) when the run succeeded; an existing adapter is never overwritten. ``settings``:
        further training settings of ``petite finetune`` (e.g. ``batch_size=2``, ``val_subjects=1``).
        """
        if cohortDir is None or not pathlib.Path(cohortDir).is_dir():
            raise PetiteError(f"cohort folder '{cohortDir or ''}': not a folder")
        cohortDir = pathlib.Path(cohortDir)
        name = adapterName or re.sub(r"[^A-Za-z0-9._-]+", "-", f"{cohortDir.name}-{peft}").strip("-.")
        if not ADAPTER_NAME_PATTERN.match(name):
            raise PetiteError(f"adapter name '{name}': use letters, digits, '.', '_' and '-' only")
        out = self.adaptersDir / (name + ADAPTER_SUFFIX)
        if out.exists():
            raise PetiteError(f"adapter '{name}' already exists ({out}): choose another name")
        base = self.chooseModels(None, ADAPTER_NONE, base).base
        folder = pathlib.Path(tempfile.mkdtemp(prefix="PETITE-"))
        written = folder / out.name

        def finish(folder):
            if out.exists():
                raise PetiteError(f"adapter '{name}' already exists ({out}): the new one was not kept")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(written), str(out))
            return out

        command = ["finetune", "--cohort", cohortDir, "--base", base, "--peft", peft, "--out", written,
                   "--seed", seed, "--device", device]
        for option, value in (("epochs", epochs), ("lr", lr), *sorted(settings.items())):
            if value is not None:
                command += ["--" + option.replace("_", "-"), value]
        return PETITEProcessJob("finetune", self._cli(command), folder, finish, self.processLauncher)

    def finetune(self, cohortDir, peft: str = "petite", base=None, adapterName: Optional[str] = None,
                 epochs: Optional[int] = None, lr: Optional[float] = None, seed: int = 0, device: str = "auto",
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                 **settings) -> pathlib.Path:
        """Fine-tune a new scanner adapter; returns its path (see :meth:`finetuneJob`)."""
        return self.finetuneJob(cohortDir, peft=peft, base=base, adapterName=adapterName, epochs=epochs, lr=lr,
                                seed=seed, device=device, **settings).run(progress, cancel)

    # Sample data

    def loadSampleData(self):
        """Load the sample pair shipped with PETITE (:mod:`PETITELib.sample_data`: scanner 4,
        simulated) as two volume nodes (short, long) in Bq/mL, marked as simulated."""
        from PETITELib import nifti_io, sample_data

        nodes = []
        for path, name in zip(sample_data.sample_pair_paths(), sample_data.sample_node_names()):
            volume = nifti_io.load_volume(path)
            node = slicer_bridge.new_volume_node(slicer.mrmlScene, name, volume.array, affine=volume.affine)
            units = slicer.vtkCodedEntry()
            units.SetValueSchemeMeaning(*BQ_PER_ML)
            node.SetVoxelValueUnits(units)
            node.SetAttribute("PETITE.simulated", "1")
            nodes.append(node)
        return tuple(nodes)


def _samePath(a, b) -> bool:
    """Whether two paths name the same file (after resolving links and relative parts)."""
    return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()


#
# PETITETest
#


class PETITETest(ScriptedLoadableModuleTest):
    """Self-test, end to end on the sample pair shipped with PETITE: reconstruct with ``auto`` (in a
    `petite` process, on the shipped CPU model), compare (metrics, error maps with legends), a
    one-epoch fine-tune on a tiny cohort made from the pair, the new adapter in the list; then the
    panel (needs the Slicer application). Works in a temporary models folder, never the user's."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    LOGIC_TESTS = ("test_PETITE_ReconstructCompareFinetune",)

    def runTest(self):
        names = self.LOGIC_TESTS + (("test_PETITE_Widget",) if hasattr(slicer, "app") else ())
        for name in names:
            self.setUp()
            getattr(self, name)()

    def test_PETITE_ReconstructCompareFinetune(self, processLauncher=None):
        """The sample pair through the whole module: every step runs the real PETITELib."""
        import numpy as np

        from PETITELib import nifti_io, sample_data

        self.delayDisplay("Reconstruct the sample pair with 'auto'")
        with tempfile.TemporaryDirectory(prefix="PETITE-selftest-") as work:
            logic = PETITELogic(modelsDir=pathlib.Path(work) / "models", processLauncher=processLauncher)
            short, long_ = logic.loadSampleData()
            before = slicer.util.arrayFromVolume(short).copy()
            choice = logic.chooseModels(short, ADAPTER_AUTO)
            self.assertTrue(choice.adapter_shipped)  # scanner 4's grid: the shipped scanner4 adapter
            self.assertEqual(choice.adapter_name, f"scanner{sample_data.SAMPLE_SCANNER}")
            events = []
            output = logic.reconstruct(short, adapter=ADAPTER_AUTO, device="cpu", progress=events.append)
            self.assertTrue(events and events[-1].fraction == 1.0)
            self.assertIn("simulated scans", output.GetAttribute("PETITE.models"))
            np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(output), slicer_bridge.ijk_to_ras(short))
            np.testing.assert_array_equal(slicer.util.arrayFromVolume(short), before)  # input untouched
            result = slicer.util.arrayFromVolume(output)
            self.assertEqual(result.shape, before.shape)
            self.assertTrue(np.isfinite(result).all())

            self.delayDisplay("Compare with the long scan")
            parameters = logic.getParameterNode()
            parameters.inputVolume, parameters.reconstructedVolume, parameters.referenceVolume = short, output, long_
            saved = logic.compareInScene(parameters)
            self.assertEqual(PETITELogic.savedMetrics(parameters), json.loads(json.dumps(saved)))
            for key in ("input", "reconstruction"):
                self.assertTrue(np.isfinite(saved[key]["psnr"]) and 0 < saved[key]["ssim"] <= 1)
            # the shipped adapter on its own (simulated) scanner: closer to the long scan than the short scan is
            self.assertGreater(saved["reconstruction"]["psnr"], saved["input"]["psnr"])
            signed = slicer_bridge.read_volume(parameters.signedErrorVolume).array
            np.testing.assert_allclose(signed, slicer_bridge.read_volume(output).array
                                       - slicer_bridge.read_volume(long_).array, atol=1e-2)
            self.assertIn("Bq/ml", PETITELogic.colorLegend(parameters.signedErrorVolume).GetTitleText())

            self.delayDisplay("Fine-tune one epoch on a tiny cohort")
            cohort = sample_data.write_tiny_cohort(pathlib.Path(work) / "tiny-cohort",
                                                   nifti_io.load_volume(sample_data.sample_pair_paths()[0]),
                                                   nifti_io.load_volume(sample_data.sample_pair_paths()[1]))
            adapter = logic.finetune(cohort, peft="petite", adapterName="selftest", epochs=1, device="cpu",
                                     batch_size=2, crops_per_subject=1, val_subjects=1)
            self.assertEqual(adapter, logic.adaptersDir / "selftest.safetensors")
            listed = {info.name: info for info in logic.availableAdapters()}
            self.assertIn("selftest", listed)
            self.assertFalse(listed["selftest"].shipped)
            # the panel's fine-tuning made a PETITE adapter for the shipped base's backbone and preset
            # (the shipped adapters may predate a change of that spec until the zoo is rebuilt)
            from PETITELib.peft.spec import parse_spec  # a test-only check; imports torch

            self.assertEqual(listed["selftest"].spec, parse_spec("petite", "unetr", "cpu").canonical)
        self.delayDisplay("End-to-end test passed")

    def test_PETITE_Widget(self):
        """The panel (needs the Slicer application): parameter node to GUI, Compare fills the table."""
        self.delayDisplay("Panel")
        slicer.util.selectModule("PETITE")
        widget = slicer.modules.PETITEWidget
        logic = widget.logic
        short, long_ = logic.loadSampleData()
        parameters = logic.getParameterNode()
        parameters.reconstructedVolume = short
        parameters.referenceVolume = long_
        self.assertEqual(widget.ui.referenceVolumeSelector.currentNode(), long_)
        self.assertTrue(widget.ui.compareButton.enabled)
        self.assertEqual(widget.ui.cohortPathLineEdit.currentPath, "")  # unset paths stay empty
        widget.ui.compareButton.click()
        self.assertIsNotNone(parameters.signedErrorVolume)
        self.assertNotEqual(widget.ui.metricsTable.item(1, 0).text(), "-")
        parameters.adapter = "not-installed-here"
        self.assertEqual(parameters.adapter, "not-installed-here")  # kept, shown as not installed
        self.delayDisplay("Panel passed")
