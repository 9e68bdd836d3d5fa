"""PETITE: parameter-efficient fine-tuning for multi-scanner PET scan-time reduction, in 3D Slicer.

A thin Slicer module. The panel (PETITEWidget) reads the GUI, starts jobs and shows results;
PETITELogic (no Qt) converts MRML volume nodes through PETITELib.slicer_bridge and calls the
PETITELib API. Models come from the user's models folder and from the model zoo shipped with
the extension (PETITELib.zoo: a base model and per-scanner adapters; optional), which supplies
the base model when the user installed none. Everything the panel does is callable from
Slicer's Python console, e.g.::

    logic = slicer.util.getModuleLogic("PETITE")
    output = logic.reconstruct(slicer.util.getNode("short"), adapter="auto", device="auto")
    result = logic.compare(output, slicer.util.getNode("long"))
    print(result["metrics"])  # {"psnr": dB, "ssim": ..., "nrmse": ..., "psnr_whole": ...}
"""
import contextlib
import enum
import logging
import os
import pathlib
import queue
import re
import sys
import threading
import traceback
from typing import Annotated, Callable, Dict, List, NamedTuple, Optional

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
from PETITELib.progress import CancelToken, ProgressCallback, ProgressEvent  # noqa: E402

# Python packages PETITE needs inside Slicer, beyond what Slicer bundles (numpy, scipy, vtk).
# torch is installed through the PyTorch extension (SlicerPyTorch), never by a plain pip install.
REQUIREMENTS = ("torch>=2.0", "monai>=1.3", "einops>=0.6", "nibabel>=4.0", "safetensors>=0.4", "tqdm>=4.60")
# The sample data simulator builds heads from the MNI152 maps shipped inside nilearn.
SAMPLE_DATA_REQUIREMENTS = ("nibabel>=4.0", "nilearn>=0.10")

ADAPTER_AUTO = "auto"
ADAPTER_NONE = "none"
ADAPTER_SUFFIX = ".safetensors"
ADAPTER_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Colour maps (Slicer colour node IDs) of the error-map overlays.
SIGNED_ERROR_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileDivergingBlueRed.txt"
ABSOLUTE_ERROR_COLOR_NODE_ID = "vtkMRMLColorTableNodeFileInferno.txt"
ERROR_WINDOW_PERCENTILE = 99.5  # error maps are windowed to this percentile of |error|
POLL_INTERVAL_MS = 200
ICON_FILE = "Resources/Icons/PETITE.png"  # relative to the repository root, see extensionPath
BQ_PER_ML = ("Bq/ml", "UCUM", "Becquerels/milliliter")  # voxel-value units (code, scheme, meaning)


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
parameter-efficient fine-tuning (PEFT). See the
<a href="https://github.com/petite-pet/PETITE#use-in-3d-slicer">documentation</a>.
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
    """Register the simulated short/long pairs with the Sample Data module, when it is present.

    A pair is simulated on this computer the first time it is loaded (a few seconds), then
    cached in the models folder; nothing is downloaded.
    """
    try:
        import SampleData
    except ImportError:
        return
    from PETITELib import sample_data

    SampleData.SampleDataLogic.registerCustomSampleDataCategory("PETITE", title=_("PETITE (simulated PET)"))
    folder = PETITELogic().sampleDataDir
    for scanner in sample_data.SAMPLE_SCANNERS:
        paths = sample_data.sample_pair_paths(folder, scanner)
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="PETITE",
            sampleName=f"PETITEScanner{scanner}",
            thumbnailFileName=extensionPath(ICON_FILE),
            uris=[path.absolute().as_uri() for path in paths],  # the cache: exists once simulated
            fileNames=[path.name for path in paths],
            nodeNames=list(sample_data.sample_node_names(scanner)),
            customDownloader=lambda source, scanner=scanner: _loadSample(scanner),
        )


def _loadSample(scanner: int) -> None:
    """Sample Data button: simulate (first use only) and load the pair of one scanner."""
    logic = PETITELogic()
    if not confirmAndInstall(logic, SAMPLE_DATA_REQUIREMENTS):
        return
    with errorsInDialog(_("PETITE sample data")):
        with slicer.util.WaitCursor():
            shortNode = logic.loadSampleData(scanner)[0]
        slicer.util.setSliceViewerLayers(background=shortNode, fit=True)


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
    "none". baseModel: base model file (empty: the only one in the models folder's base/, else the
    base model shipped with PETITE). device: auto/GPU/CPU.
    outputVolume: where the result goes (none: a new volume per run).
    reconstructedVolume, referenceVolume: the pair compared; overlay: error map shown;
    wholeVolumeMetrics: metrics over the whole volume instead of inside the head;
    signedErrorVolume, absoluteErrorVolume: the error maps of the last comparison (reused).
    cohortDir, peft, epochs (0: default), learningRate (0: default), adapterName: fine-tuning.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    adapter: str = ADAPTER_AUTO
    baseModel: pathlib.Path
    device: Device = Device.AUTO
    outputVolume: vtkMRMLScalarVolumeNode
    reconstructedVolume: vtkMRMLScalarVolumeNode
    referenceVolume: vtkMRMLScalarVolumeNode
    overlay: Overlay = Overlay.SIGNED
    wholeVolumeMetrics: bool = False
    signedErrorVolume: vtkMRMLScalarVolumeNode
    absoluteErrorVolume: vtkMRMLScalarVolumeNode
    cohortDir: pathlib.Path
    peft: str = "petite"
    epochs: Annotated[int, WithinRange(0, 10000)] = 0
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    adapterName: str = ""


def optionalPath(path) -> Optional[pathlib.Path]:
    """A path parameter as a Path, or None when it is unset (empty, or "." as an empty path reads back)."""
    if path is None or str(path).strip() in ("", "."):
        return None
    return pathlib.Path(path)


#
# Background jobs
#


class PETITEJob:
    """One long PETITELib call, run on a worker thread and polled from the main thread.

    ``work(progress, cancel)`` runs on the worker thread: it must not touch MRML nodes or Qt.
    ``finish(result)`` runs on the thread that calls :meth:`finish` (the main thread), and is
    where output nodes are created. Progress events are queued by the worker and handed out
    by :meth:`events`. :meth:`run` does the same synchronously, for the Python console.
    """

    def __init__(self, name: str, work: Callable[[ProgressCallback, CancelToken], object],
                 finish: Callable[[object], object] = lambda result: result,
                 cancel: Optional[CancelToken] = None):
        self.name = name
        self.cancelToken = cancel if cancel is not None else CancelToken()
        self._work = work
        self._finish = finish
        self._events: "queue.SimpleQueue[ProgressEvent]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._result = None
        self._error: Optional[BaseException] = None

    def start(self) -> "PETITEJob":
        """Start the work on a daemon worker thread and return at once."""
        self._thread = threading.Thread(target=self._runWork, name=f"PETITE {self.name}", daemon=True)
        self._thread.start()
        return self

    def _runWork(self) -> None:
        try:
            self._result = self._work(self._events.put, self.cancelToken)
        except BaseException as exc:  # handed to the main thread by finish()
            self._error = exc

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def cancel(self) -> None:
        """Ask the work to stop at its next safe point (it then ends with :class:`Cancelled`)."""
        self.cancelToken.cancel()

    def events(self) -> List[ProgressEvent]:
        """The progress events queued since the last call, oldest first."""
        drained = []
        while True:
            try:
                drained.append(self._events.get_nowait())
            except queue.Empty:
                return drained

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the worker ends (or ``timeout`` seconds pass); True when it has ended."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def finish(self):
        """After the worker ended: re-raise its error, or pass its result through ``finish``."""
        if self._thread is None or self.running:
            raise RuntimeError(f"PETITE {self.name} job has not ended")
        if self._error is not None:
            raise self._error
        return self._finish(self._result)

    def run(self, progress: Optional[ProgressCallback] = None):
        """Do the whole job in the calling thread (console and scripts); return finish's result."""
        return self._finish(self._work(progress if progress is not None else (lambda event: None),
                                       self.cancelToken))


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
        self._jobs: Dict[str, PETITEJob] = {}
        self._jobWidgets: Dict[str, tuple] = {}  # job name -> (button, progress bar, status label, idle text)
        self._timer = None
        self._metrics: Dict[str, Optional[dict]] = {}  # "input"/"reconstruction" -> metrics of the last Compare
        self._adapters: List[AdapterInfo] = []  # installed adapters, read on Refresh

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

        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self._pollJobs)

        self.ui.metricsTable.setHorizontalHeaderLabels([_("PSNR (dB)"), _("SSIM"), _("NRMSE")])
        self.ui.metricsTable.setVerticalHeaderLabels([_("short scan"), _("reconstruction")])
        self.ui.metricsTable.horizontalHeader().setSectionResizeMode(qt.QHeaderView.Stretch)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshAdaptersButton.connect("clicked(bool)", self.onRefreshAdapters)
        self.ui.baseModelPathLineEdit.connect("currentPathChanged(QString)", self.onBaseModelChanged)
        self.ui.adapterComboBox.connect("currentIndexChanged(int)", self.onAdapterSelected)
        self.ui.peftComboBox.connect("currentTextChanged(QString)", self.onPeftChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.compareButton.connect("clicked(bool)", self.onCompareButton)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        self.ui.wholeVolumeCheckBox.connect("toggled(bool)", self.onWholeVolumeToggled)
        self.ui.finetuneButton.connect("clicked(bool)", self.onFinetuneButton)

        self.ui.modelsFolderValueLabel.text = str(self.logic.modelsDir)
        self.updateDependencyStatus()
        self.onRefreshAdapters()
        self.initializeParameterNode()
        self.onBaseModelChanged(str(self._parameterNode.baseModel))

    def cleanup(self) -> None:
        """Module unloaded: stop observing and ask running jobs to stop."""
        for job in self._jobs.values():
            job.cancel()
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
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
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

    def _updateGUI(self, caller=None, event=None) -> None:
        """Parameter node changed: sync the widgets that are not bound to it, and enable buttons."""
        p = self._parameterNode
        if not p:
            return
        index = self.ui.adapterComboBox.findData(p.adapter)
        if index < 0:  # e.g. a scene saved with an adapter that is not installed here
            p.adapter = ADAPTER_AUTO  # calls this method again
            return
        wasBlocked = self.ui.adapterComboBox.blockSignals(True)
        self.ui.adapterComboBox.currentIndex = index
        self.ui.adapterComboBox.blockSignals(wasBlocked)
        if self.ui.peftComboBox.currentText != p.peft:
            wasBlocked = self.ui.peftComboBox.blockSignals(True)
            self.ui.peftComboBox.setEditText(p.peft)
            self.ui.peftComboBox.blockSignals(wasBlocked)

        self.ui.detectedScannerValueLabel.text = self._autoChoiceText(p.inputVolume)
        reconstructing = "reconstruct" in self._jobs
        self.ui.applyButton.enabled = reconstructing or bool(p.inputVolume)
        self.ui.compareButton.enabled = bool(p.reconstructedVolume and p.referenceVolume)
        finetuning = "finetune" in self._jobs
        cohort = optionalPath(p.cohortDir)
        self.ui.finetuneButton.enabled = finetuning or bool(cohort and cohort.is_dir())
        self._showMetrics(p.wholeVolumeMetrics)

    def _autoChoiceText(self, volumeNode) -> str:
        """What ``auto`` sees in a volume: its scanner (or grid), and the adapter it would pick."""
        if not volumeNode or volumeNode.GetImageData() is None:
            return ""
        scanner = self.logic.detectScanner(volumeNode)
        if scanner:
            text = scanner_matching.describe_scanner(scanner_matching.table4_profile(scanner))
        else:
            shape, spacing = slicer_bridge.volume_grid(volumeNode)
            grid = scanner_matching.describe_scanner(scanner_matching.ScannerProfile(matrix=shape, spacing=spacing))
            text = _("not a known scanner ({grid})").format(grid=grid)
        match = self.logic.matchAdapter(volumeNode, self._adapters)
        if match and match.shipped:
            return text + "; " + _("auto uses the shipped adapter '{name}'").format(name=match.name)
        if match:
            return text + "; " + _("auto uses adapter '{name}'").format(name=match.name)
        return text + "; " + _("auto: no adapter fits, base model only")

    # Set-up

    def updateDependencyStatus(self) -> None:
        missing = self.logic.missingPackages()
        if missing:
            self.ui.dependenciesStatusLabel.text = _("Missing Python packages: {packages}.").format(
                packages=", ".join(missing))
            self.ui.setupCollapsibleButton.collapsed = False
        else:
            self.ui.dependenciesStatusLabel.text = _("All required Python packages are installed.")
            self.ui.setupCollapsibleButton.collapsed = True
        self.ui.installDependenciesButton.enabled = bool(missing)

    def ensureDependencies(self, requirements=REQUIREMENTS) -> bool:
        """Install missing packages after the user confirms; False when the user declined."""
        if not self.logic.missingPackages(requirements):
            return True
        installed = confirmAndInstall(self.logic, requirements)
        self.updateDependencyStatus()
        if installed:  # adapters and PEFT specs can be read now (onBaseModelChanged lists both)
            self.onBaseModelChanged(str(self._parameterNode.baseModel) if self._parameterNode else "")
        return installed

    def onInstallDependencies(self) -> None:
        self.ensureDependencies()

    # Reconstruct

    def onRefreshAdapters(self) -> None:
        """Read the adapters folder (and the shipped models) again and list the adapters."""
        base = optionalPath(self._parameterNode.baseModel) if self._parameterNode else None
        self._listAdapters(base)

    def _listAdapters(self, base) -> None:
        """Fill the adapter list with the adapters on offer for the base model ``base`` (None: the default)."""
        try:
            self._adapters = self.logic.installedAdapters(base)
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
        self._listAdapters(optionalPath(path))
        try:
            base = self.logic.resolveBase(optionalPath(path), verify=False)  # no hashing on each change
        except PetiteError:
            base = None
        try:
            specs = self.logic.peftSpecs(base)
        except ImportError:  # dependencies not installed yet
            specs = ["petite"]
        combo = self.ui.peftComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for spec in specs:
            combo.addItem(spec)
        combo.setEditText(self._parameterNode.peft if self._parameterNode else specs[0])
        combo.blockSignals(wasBlocked)

    def onAdapterSelected(self, index: int) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.adapter = self.ui.adapterComboBox.itemData(index)

    def onApplyButton(self) -> None:
        if "reconstruct" in self._jobs:
            self._jobs["reconstruct"].cancel()
            self.ui.reconstructStatusLabel.text = _("Cancelling...")
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with errorsInDialog(_("Reconstruction failed.")):
            job = self.logic.reconstructJob(p.inputVolume, adapter=p.adapter, base=optionalPath(p.baseModel),
                                            device=self.logic.deviceName(p.device.value),
                                            outputVolumeNode=p.outputVolume)
            self._startJob("reconstruct", job, self.ui.applyButton, self.ui.reconstructProgressBar,
                           self.ui.reconstructStatusLabel)

    def _onReconstructDone(self, outputNode) -> None:
        if self._parameterNode:  # None while the scene closes
            self._parameterNode.reconstructedVolume = outputNode
        slicer.util.setSliceViewerLayers(background=outputNode, foreground=None, fit=True)
        self.ui.reconstructStatusLabel.text = _("Done: {name}. {note}").format(
            name=outputNode.GetName(), note=outputNode.GetAttribute("PETITE.adapter") or "")

    # Compare

    def onCompareButton(self) -> None:
        p = self._parameterNode
        with errorsInDialog(_("Comparison failed.")):
            with slicer.util.WaitCursor():
                result = self.logic.compare(p.reconstructedVolume, p.referenceVolume,
                                            signedErrorNode=p.signedErrorVolume,
                                            absoluteErrorNode=p.absoluteErrorVolume)
                p.signedErrorVolume = result["signedError"]
                p.absoluteErrorVolume = result["absoluteError"]
                self._metrics = {"reconstruction": result["metrics"], "input": None}
                if p.inputVolume and p.inputVolume is not p.reconstructedVolume:
                    try:
                        self._metrics["input"] = self.logic.compare(p.inputVolume, p.referenceVolume,
                                                                    errorMaps=False)["metrics"]
                    except PetiteError as exc:  # e.g. the short scan is on another grid: leave its row empty
                        logging.info(f"PETITE: no metrics for the short scan: {exc}")
            self._showMetrics(p.wholeVolumeMetrics)
            self.onOverlayChanged(self.ui.overlayComboBox.currentIndex)

    def onOverlayChanged(self, index: int) -> None:
        """Show the chosen error map (combo items are in Overlay order) over the reconstruction."""
        p = self._parameterNode
        if not p or not p.reconstructedVolume or index < 0:
            return
        overlay = list(Overlay)[index]
        foreground = {Overlay.SIGNED: p.signedErrorVolume, Overlay.ABSOLUTE: p.absoluteErrorVolume}.get(overlay)
        slicer.util.setSliceViewerLayers(background=p.reconstructedVolume, foreground=foreground,
                                         foregroundOpacity=0.5 if foreground else 0.0)

    def onWholeVolumeToggled(self, checked: bool) -> None:
        self._showMetrics(checked)

    def _showMetrics(self, wholeVolume: bool) -> None:
        suffix = "_whole" if wholeVolume else ""
        for row, key in enumerate(("input", "reconstruction")):
            metrics = self._metrics.get(key)
            for column, (name, fmt) in enumerate((("psnr", "{:.2f}"), ("ssim", "{:.4f}"), ("nrmse", "{:.4f}"))):
                text = fmt.format(metrics[name + suffix]) if metrics else "-"
                self.ui.metricsTable.setItem(row, column, qt.QTableWidgetItem(text))

    # Fine-tune

    def onPeftChanged(self, text: str) -> None:
        if self._parameterNode and self._parameterNode.peft != text:
            self._parameterNode.peft = text

    def onFinetuneButton(self) -> None:
        if "finetune" in self._jobs:
            self._jobs["finetune"].cancel()
            self.ui.finetuneStatusLabel.text = _("Cancelling after the current step...")
            return
        if not self.ensureDependencies():
            return
        p = self._parameterNode
        with errorsInDialog(_("Fine-tuning failed.")):
            job = self.logic.finetuneJob(optionalPath(p.cohortDir), peft=p.peft, base=optionalPath(p.baseModel),
                                         adapterName=p.adapterName or None, epochs=p.epochs or None,
                                         lr=p.learningRate or None, device=self.logic.deviceName(p.device.value))
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

    def _startJob(self, name: str, job: PETITEJob, button, progressBar, statusLabel) -> None:
        self._jobs[name] = job.start()
        self._jobWidgets[name] = (button, progressBar, statusLabel, button.text)
        button.text = _("Cancel")
        progressBar.value = 0
        progressBar.visible = True
        statusLabel.text = _("Starting...")
        self._timer.start()
        self._updateGUI()

    def _pollJobs(self) -> None:
        """QTimer tick (main thread): show progress, finish ended jobs."""
        for name, job in list(self._jobs.items()):
            button, progressBar, statusLabel, idleText = self._jobWidgets[name]
            events = job.events()
            if events:
                progressBar.value = int(round(100 * events[-1].fraction))
                statusLabel.text = describeProgress(events[-1])
            if job.running:
                continue
            del self._jobs[name]
            button.text = idleText
            progressBar.visible = False
            with errorsInDialog(_("PETITE {name} failed.").format(name=name), statusLabel):
                result = job.finish()
                {"reconstruct": self._onReconstructDone, "finetune": self._onFinetuneDone}[name](result)
            self._updateGUI()
        if not self._jobs:
            self._timer.stop()


def confirmAndInstall(logic, requirements=REQUIREMENTS) -> bool:
    """Ask the user, then install the missing ``requirements``; True when nothing is missing any more."""
    missing = logic.missingPackages(requirements)
    if not missing:
        return True
    if not slicer.util.confirmOkCancelDisplay(
            _("PETITE needs these Python packages, which will now be downloaded and installed "
              "(this can take several minutes):\n\n{packages}\n\nPyTorch is installed through the "
              "PyTorch extension.").format(packages=", ".join(missing)), windowTitle=_("PETITE set-up")):
        return False
    with errorsInDialog(_("PETITE set-up")):
        with slicer.util.WaitCursor():
            logic.installDependencies(requirements)
    return not logic.missingPackages(requirements)


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


_reportedZooProblems = set()  # problems with the shipped zoo's manifest already logged


def _samePath(a, b) -> bool:
    """Whether two paths name the same file (after resolving links and relative parts)."""
    return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()


class AdapterInfo(NamedTuple):
    """An adapter the panel offers: ``name`` (file stem, or the shipped name), ``path``, ``spec`` (its
    PEFT spec; "full" for a fully fine-tuned model), ``scanner`` (the target scanner it records),
    ``description`` (one line), ``shipped`` (True: from the model zoo shipped with PETITE, False: the
    user's, in the models folder) and ``metrics`` (shipped adapters: their held-out scores as one
    line, e.g. "held-out PSNR 30.1 dB vs base 29.5 dB"; else empty)."""

    name: str
    path: pathlib.Path
    spec: str
    scanner: scanner_matching.ScannerProfile
    description: str
    shipped: bool = False
    metrics: str = ""

    def label(self) -> str:
        """The adapter's line in the panel's list, e.g.
        ``scanner4 - scanner 4, ... [petite] (shipped: held-out PSNR 30.1 dB vs base 29.5 dB)``."""
        text = f"{self.name} - {self.description} [{self.spec}]"
        if self.shipped:
            text += " (" + ": ".join(part for part in (_("shipped"), self.metrics) if part) + ")"
        return text


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

    Volumes go through :mod:`PETITELib.slicer_bridge` (the one MRML <-> array conversion);
    input nodes are never modified. Long calls exist twice: ``reconstruct``/``finetune`` run in
    the calling thread and take ``progress``/``cancel`` like PETITELib; ``reconstructJob``/
    ``finetuneJob`` return a :class:`PETITEJob` to start in the background (the panel does).

    modelsDir: the user's folder, holding ``adapters/*.safetensors``, ``base/`` (its only file is
    the default base model) and ``sample-data/``; default ``$PETITE_MODELS_DIR``, else
    ``<Slicer cache>/PETITE``, else ``~/.petite``.

    The model zoo shipped with PETITE (:mod:`PETITELib.zoo`: ``Resources/Models``, or
    ``$PETITE_ZOO_DIR``; it may be absent) adds a default base model, used when ``base/`` is empty,
    and per-scanner adapters, offered only while that shipped base is the one in use. A user's
    base or adapter wins over a shipped one. Shipped files are checked against the manifest's
    SHA-256 when they are used, not when they are listed.
    """

    def __init__(self, modelsDir=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.modelsDir = pathlib.Path(modelsDir) if modelsDir else self.defaultModelsDir()

    @staticmethod
    def defaultModelsDir() -> pathlib.Path:
        if os.environ.get("PETITE_MODELS_DIR"):
            return pathlib.Path(os.environ["PETITE_MODELS_DIR"])
        app = getattr(slicer, "app", None)
        if app is not None:
            return pathlib.Path(app.cachePath) / "PETITE"
        return pathlib.Path.home() / ".petite"

    @property
    def adaptersDir(self) -> pathlib.Path:
        return self.modelsDir / "adapters"

    @property
    def sampleDataDir(self) -> pathlib.Path:
        return self.modelsDir / "sample-data"

    def getParameterNode(self) -> PETITEParameterNode:
        return PETITEParameterNode(super().getParameterNode())

    # Set-up

    @staticmethod
    def missingPackages(requirements=REQUIREMENTS) -> List[str]:
        """Import names of the ``requirements`` (pip specifiers) that are not installed."""
        import importlib.util

        names = [requirementName(r) for r in requirements]
        return [name for name in names if importlib.util.find_spec(name) is None]

    def installDependencies(self, requirements=REQUIREMENTS) -> None:
        """Install the missing ``requirements``: torch through the PyTorch extension, the rest with pip."""
        missing = self.missingPackages(requirements)
        torch = [r for r in requirements if requirementName(r) == "torch" and "torch" in missing]
        if torch:
            try:
                import PyTorchUtils
            except ImportError:
                raise PetiteError("the PyTorch extension is not installed: install 'PyTorch' from the "
                                  "Extensions Manager, restart Slicer, and try again") from None
            version = torch[0][len("torch"):]
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=version) is None:
                raise PetiteError("PyTorch was not installed")
        others = [r for r in requirements if requirementName(r) in missing and requirementName(r) != "torch"]
        if others:
            slicer.util.pip_install(others)

    @staticmethod
    def deviceName(device: str) -> str:
        """PETITELib device name for a panel choice: auto, gpu (CUDA, or MPS on macOS) or cpu."""
        if device == "gpu":
            return "mps" if sys.platform == "darwin" else "cuda"
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

    # Models: base and adapters

    @property
    def baseModelsDir(self) -> pathlib.Path:
        return self.modelsDir / "base"

    @staticmethod
    def shippedModels():
        """The manifest (:class:`PETITELib.zoo.Manifest`) of the model zoo shipped with PETITE
        (:func:`PETITELib.zoo.zoo_dir`), or None when there is none (or its manifest is unreadable,
        which is logged). Reads the manifest only: no model file is read or hashed."""
        from PETITELib.zoo import MANIFEST_NAME, load_manifest, zoo_dir

        try:
            return load_manifest()
        except PetiteError as exc:
            if (zoo_dir() / MANIFEST_NAME).exists() and str(exc) not in _reportedZooProblems:  # say why, once
                _reportedZooProblems.add(str(exc))
                logging.warning(f"PETITE: the shipped models are not used: {exc}")
            return None

    def defaultBase(self, verify: bool = True) -> pathlib.Path:
        """The base model used when none is chosen: the only file in :attr:`baseModelsDir` (a base
        the user installed wins), else the shipped base model, checked against the manifest's
        SHA-256 unless ``verify`` is False. PetiteError (one line) when :attr:`baseModelsDir`
        holds several files, or when there is neither an installed nor a shipped base model."""
        from PETITELib.zoo import verify_entry

        found = sorted(self.baseModelsDir.glob("*" + ADAPTER_SUFFIX))
        if len(found) == 1:
            return found[0]
        if found:
            raise PetiteError(f"no base model chosen, and {self.baseModelsDir} holds {len(found)} base models: "
                              "pick one under Reconstruct, or keep only one there")
        manifest = self.shippedModels()
        if manifest is None or manifest.base is None:
            raise PetiteError(f"no base model chosen: pick a base model file (from 'petite pretrain') under "
                              f"Reconstruct, or put one in {self.baseModelsDir} (no base model is shipped "
                              "with this installation)")
        return verify_entry(manifest.base) if verify else manifest.base.path

    def resolveBase(self, base=None, verify: bool = True) -> pathlib.Path:
        """The base model to use: ``base`` if given, else :meth:`defaultBase`. With ``verify``, a
        shipped base file is checked against the manifest's SHA-256 (see :meth:`verifyShipped`)."""
        path = pathlib.Path(base) if base else self.defaultBase(verify=False)
        return self.verifyShipped(path) if verify else path

    def verifyShipped(self, path) -> pathlib.Path:
        """``path``, checked against the shipped zoo's manifest (size, SHA-256) when it is one of
        the shipped files; PetiteError (one line naming the file) when that file is missing or
        corrupted. Any other file is returned unchecked."""
        from PETITELib.zoo import verify_entry

        path = pathlib.Path(path)
        manifest = self.shippedModels()
        entry = None if manifest is None else next((e for e in manifest.entries if _samePath(e.path, path)), None)
        return verify_entry(entry) if entry is not None else path

    def shippedAdapters(self, base=None) -> List[AdapterInfo]:
        """The shipped adapters that fit the base model in use (``base``, else :meth:`defaultBase`):
        those made for the shipped base, while the shipped base is the one in use ([] otherwise:
        they do not fit a base the user installed). Read from the manifest, in its order; the
        files are neither read nor hashed (see :meth:`resolveAdapter`)."""
        manifest = self.shippedModels()
        if manifest is None or manifest.base is None:
            return []
        try:
            inUse = self.resolveBase(base, verify=False)
        except PetiteError:
            return []
        if not _samePath(inUse, manifest.base.path):
            return []
        adapters = []
        for entry in manifest.adapters:
            if entry.record.get("base") != manifest.base.name:
                continue
            profile = scanner_matching.scanner_profile(entry.scanner)
            description = str(entry.record.get("description") or scanner_matching.describe_scanner(profile))
            adapters.append(AdapterInfo(entry.name, entry.path, str(entry.record.get("spec") or ""), profile,
                                        description, shipped=True, metrics=shippedMetricsText(entry.record)))
        return adapters

    def installedAdapters(self, base=None) -> List[AdapterInfo]:
        """The adapters on offer for the base model ``base`` (default: :meth:`defaultBase`): the
        user's files in :attr:`adaptersDir` (adapters and fully fine-tuned models), sorted by name,
        then the shipped ones that fit that base (:meth:`shippedAdapters`); a user adapter hides a
        shipped one of the same name.

        An unreadable user file is listed with the problem as its description (selecting it fails).
        """
        user = [self.readAdapterInfo(path) for path in sorted(self.adaptersDir.glob("*" + ADAPTER_SUFFIX))]
        names = {adapter.name for adapter in user}
        return user + [adapter for adapter in self.shippedAdapters(base) if adapter.name not in names]

    @staticmethod
    def readAdapterInfo(path) -> AdapterInfo:
        """What an adapter file says about itself (its metadata only; no weights are read)."""
        from PETITELib.engine.models import ADAPTER_FORMAT, BASE_FORMAT, file_format
        from PETITELib.peft.adapter_files import ADAPTER_FORMAT_VERSION
        from PETITELib.peft.base_files import BASE_FORMAT_VERSION
        from PETITELib.peft.safetensors_io import read_metadata

        path = pathlib.Path(path)
        name = path.name[:-len(ADAPTER_SUFFIX)] if path.name.endswith(ADAPTER_SUFFIX) else path.stem
        try:
            kind = file_format(path)
            if kind == ADAPTER_FORMAT:
                metadata = read_metadata(path, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION)
                profile = scanner_matching.scanner_profile(metadata.get("scanner"))
                return AdapterInfo(name, path, str(metadata.get("spec", "")), profile,
                                   scanner_matching.describe_scanner(profile))
            if kind == BASE_FORMAT:  # a fully fine-tuned model: its training summary names the scanner
                metadata = read_metadata(path, BASE_FORMAT, BASE_FORMAT_VERSION)
                scanner = str(metadata.get("training", {}).get("scanner") or _("unknown scanner"))
                return AdapterInfo(name, path, "full", scanner_matching.ScannerProfile(),
                                   f"{scanner} ({_('full fine-tuning')})")
            raise PetiteError(f"{path}: not a PETITE adapter file")
        except PetiteError as exc:
            return AdapterInfo(name, path, "", scanner_matching.ScannerProfile(),
                               _("unreadable: {problem}").format(problem=exc))

    def detectScanner(self, volumeNode):
        """The Table-4 scanner (:class:`PETITELib.data.scanners.Scanner`) a volume fits, or None
        (see :func:`PETITELib.scanner_matching.detect_scanner`; DICOM names count when present)."""
        shape, spacing = slicer_bridge.volume_grid(volumeNode)
        return scanner_matching.detect_scanner(shape, spacing, slicer_bridge.dicom_scanner_info(volumeNode))

    def matchAdapter(self, volumeNode, adapters: Optional[List[AdapterInfo]] = None,
                     base=None) -> Optional[AdapterInfo]:
        """The adapter ``auto`` picks for a volume, or None when none fits: the best match of its
        scanner (:func:`PETITELib.scanner_matching.best_match`) among ``adapters`` (default: those
        :meth:`installedAdapters` offers for ``base``); on a tie, the user's adapters before the
        shipped ones, then the most recently written."""
        def preferred(adapter: AdapterInfo):
            mtime = adapter.path.stat().st_mtime_ns if adapter.path.exists() else 0
            return not adapter.shipped, mtime, adapter.name

        candidates = self.installedAdapters(base) if adapters is None else adapters
        ordered = sorted(candidates, key=preferred, reverse=True)
        shape, spacing = slicer_bridge.volume_grid(volumeNode)
        return scanner_matching.best_match([(adapter.scanner, adapter) for adapter in ordered], shape, spacing,
                                           slicer_bridge.dicom_scanner_info(volumeNode))

    def resolveAdapter(self, adapter: str, volumeNode, base=None) -> Optional[pathlib.Path]:
        """Adapter file for a choice, with the base model ``base`` (default: :meth:`defaultBase`):
        "auto" (:meth:`matchAdapter`; None when nothing fits), "none" (None: base model only), the
        name of a user's or a shipped adapter (the user's wins), or the path of an adapter file.
        A shipped file is checked against the manifest's SHA-256 here (PetiteError naming the file
        when it is corrupted)."""
        if adapter in (None, "", ADAPTER_NONE):
            return None
        if adapter == ADAPTER_AUTO:
            match = self.matchAdapter(volumeNode, base=base)
            return self.verifyShipped(match.path) if match else None
        named = self.adaptersDir / (adapter + ADAPTER_SUFFIX)
        if named.is_file():
            return named
        shipped = next((a for a in self.shippedAdapters(base) if a.name == adapter), None)
        if shipped is not None:
            return self.verifyShipped(shipped.path)
        if pathlib.Path(adapter).is_file():
            return self.verifyShipped(adapter)
        manifest = self.shippedModels()
        if manifest is not None and any(a.name == adapter for a in manifest.adapters):
            raise PetiteError(f"adapter '{adapter}': shipped for the shipped base model only, and another base "
                              f"model is in use (chosen under Reconstruct, or installed in {self.baseModelsDir})")
        raise PetiteError(f"adapter '{adapter}': not found in {self.adaptersDir}, nor among the shipped adapters")

    # Reconstruct

    def reconstructJob(self, inputVolumeNode, adapter: str = ADAPTER_AUTO, base=None, device: str = "auto",
                       outputVolumeNode=None, cancel: Optional[CancelToken] = None) -> PETITEJob:
        """Prepare a reconstruction (reads the input now, on this thread); start it or :meth:`PETITEJob.run` it.

        base: a base-model file (default: :meth:`defaultBase`, the installed or else the shipped
        one); adapter: see :meth:`resolveAdapter`. Shipped files are checked (SHA-256) here, so a
        corrupted one fails before any work. The job's result is the output volume node:
        ``outputVolumeNode``, or a new node named "<input> PETITE", with the input's IJK-to-RAS
        matrix, parent transform and units.
        """
        if inputVolumeNode is None:
            raise PetiteError("no input volume selected")
        if outputVolumeNode is not None and outputVolumeNode is inputVolumeNode:
            raise PetiteError(f"output volume '{outputVolumeNode.GetName()}' is the input: choose another "
                              "output (input volumes are never modified)")
        base = self.resolveBase(base)
        volume = slicer_bridge.read_volume(inputVolumeNode)
        adapterPath = self.resolveAdapter(adapter, inputVolumeNode, base=base)
        note = f"adapter {adapterPath.name}" if adapterPath else "base model only (no adapter)"

        def work(progress, cancelToken):
            from PETITELib import api

            return api.reconstruct(volume.array, volume.affine, base=base, adapter=adapterPath, device=device,
                                   progress=progress, cancel=cancelToken)

        def finish(array):
            if outputVolumeNode is None:
                node = slicer_bridge.new_volume_node(slicer.mrmlScene, f"{inputVolumeNode.GetName()} PETITE",
                                                     array, like=inputVolumeNode)
            else:
                node = outputVolumeNode
                slicer_bridge.write_volume(node, array, like=inputVolumeNode)
                if node.GetDisplayNode() is None:
                    node.CreateDefaultDisplayNodes()
            node.SetAttribute("PETITE.adapter", note)
            return node

        return PETITEJob("reconstruct", work, finish, cancel)

    def reconstruct(self, inputVolumeNode, adapter: str = ADAPTER_AUTO, base=None, device: str = "auto",
                    outputVolumeNode=None, progress: Optional[ProgressCallback] = None,
                    cancel: Optional[CancelToken] = None):
        """Enhance a short-scan volume node; returns the output node (see :meth:`reconstructJob`)."""
        return self.reconstructJob(inputVolumeNode, adapter=adapter, base=base, device=device,
                                   outputVolumeNode=outputVolumeNode, cancel=cancel).run(progress)

    # Compare

    def compare(self, volumeNode, referenceVolumeNode, errorMaps: bool = True,
                signedErrorNode=None, absoluteErrorNode=None) -> dict:
        """Metrics of ``volumeNode`` against ``referenceVolumeNode`` (same voxel grid), and error maps.

        Returns ``{"metrics": {...}, "signedError": node, "absoluteError": node}``. The metrics
        are :func:`PETITELib.metrics.compare_volumes`'s: psnr (dB), ssim, nrmse inside the head
        of the reference, and the same with ``_whole`` over the whole volume. The error maps
        (volume - reference, and its absolute value; input units) go into the given nodes or new
        ones, with the volume's geometry and a colour map. With ``errorMaps=False`` both are None.
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

    @staticmethod
    def _errorMapNode(node, name: str, array, like, colorNodeID: str, symmetric: bool):
        """Write an (x, y, z) error map into ``node`` (or a new one) with a colour map and window."""
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
        return node

    # Fine-tune

    def finetuneJob(self, cohortDir, peft: str = "petite", base=None, adapterName: Optional[str] = None,
                    epochs: Optional[int] = None, lr: Optional[float] = None, seed: int = 0,
                    device: str = "auto", cancel: Optional[CancelToken] = None) -> PETITEJob:
        """Prepare fine-tuning of a new adapter on a cohort folder; the job's result is the adapter path.

        base: the base model to adapt (default: :meth:`defaultBase`, the installed or else the
        shipped one, checked against its SHA-256). The adapter is written to
        ``<adaptersDir>/<adapterName>.safetensors`` (default name: the cohort folder's name and the
        PEFT spec); an existing adapter is never overwritten.
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
        base = self.resolveBase(base)

        def work(progress, cancelToken):
            from PETITELib import api

            out.parent.mkdir(parents=True, exist_ok=True)
            return api.finetune(cohortDir, base=base, peft=peft, out=out, epochs=epochs, lr=lr, seed=seed,
                                device=device, progress=progress, cancel=cancelToken)

        return PETITEJob("finetune", work, lambda path: pathlib.Path(path), cancel)

    def finetune(self, cohortDir, peft: str = "petite", base=None, adapterName: Optional[str] = None,
                 epochs: Optional[int] = None, lr: Optional[float] = None, seed: int = 0, device: str = "auto",
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> pathlib.Path:
        """Fine-tune a new scanner adapter; returns its path (see :meth:`finetuneJob`)."""
        return self.finetuneJob(cohortDir, peft=peft, base=base, adapterName=adapterName, epochs=epochs, lr=lr,
                                seed=seed, device=device, cancel=cancel).run(progress)

    # Sample data

    def loadSampleData(self, scanner: int, progress: Optional[ProgressCallback] = None):
        """Load the simulated (short, long) pair of a Table-4 scanner (1..5) as two volume nodes in Bq/mL.

        The pair is simulated on first use and cached in :attr:`sampleDataDir`.
        """
        from PETITELib import nifti_io, sample_data

        paths = sample_data.ensure_sample_pair(self.sampleDataDir, scanner, progress=progress)
        nodes = []
        for path, name in zip(paths, sample_data.sample_node_names(scanner)):
            volume = nifti_io.load_volume(path)
            node = slicer_bridge.new_volume_node(slicer.mrmlScene, name, volume.array, affine=volume.affine)
            units = slicer.vtkCodedEntry()
            units.SetValueSchemeMeaning(*BQ_PER_ML)
            node.SetVoxelValueUnits(units)
            nodes.append(node)
        return tuple(nodes)


def requirementName(requirement: str) -> str:
    """Import name of a pip requirement such as ``monai>=1.3``."""
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].replace("-", "_")


#
# PETITETest
#


class PETITETest(ScriptedLoadableModuleTest):
    """Self-test: the logic on real MRML nodes (no network weights needed), then the panel."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    LOGIC_TESTS = ("test_PETITE_BridgeRoundTrip", "test_PETITE_Compare", "test_PETITE_Job")

    def runTest(self):
        for name in self.LOGIC_TESTS + ("test_PETITE_Widget",):
            self.setUp()
            getattr(self, name)()

    @staticmethod
    def _obliqueVolume(shape=(24, 20, 16), seed: int = 0):
        """A PET-like (x, y, z) float32 volume and an oblique, anisotropic 4x4 IJK-to-RAS (mm)."""
        import numpy as np

        rng = np.random.default_rng(seed)
        grid = np.indices(shape, dtype=np.float32)
        centre = (np.array(shape, dtype=np.float32) - 1) / 2
        radius = np.sqrt(sum(((g - c) / (0.4 * n)) ** 2 for g, c, n in zip(grid, centre, shape)))
        array = (4000.0 * (radius < 1) * (1 + 0.3 * (radius > 0.7)) + rng.normal(0, 50, shape)).astype(np.float32)
        angle = np.deg2rad(20.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        tilt = np.array([[1, 0, 0], [0, np.cos(angle / 2), -np.sin(angle / 2)], [0, np.sin(angle / 2), np.cos(angle / 2)]])
        affine = np.eye(4)
        affine[:3, :3] = rotation @ tilt @ np.diag([2.03642, 2.03642, 2.425])
        affine[:3, 3] = [-120.5, 98.25, -60.0]
        return array, affine

    def test_PETITE_BridgeRoundTrip(self):
        """Node -> (array x,y,z, affine) -> new node gives the same voxels, geometry and units."""
        import numpy as np

        self.delayDisplay("Bridge round trip")
        array, affine = self._obliqueVolume()
        node = slicer_bridge.new_volume_node(slicer.mrmlScene, "short", array, affine=affine)
        units = slicer.vtkCodedEntry()
        units.SetValueSchemeMeaning("Bq/ml", "UCUM", "Becquerels per milliliter")
        node.SetVoxelValueUnits(units)
        before = slicer.util.arrayFromVolume(node).copy()

        volume = slicer_bridge.read_volume(node)
        np.testing.assert_array_equal(volume.array, array)
        np.testing.assert_array_equal(volume.affine, affine)
        volume.array[:] = 0  # the copy is ours: the node must not change
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), before)

        copy = slicer_bridge.new_volume_node(slicer.mrmlScene, "copy", slicer_bridge.read_volume(node).array, like=node)
        np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(copy), slicer_bridge.ijk_to_ras(node))
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), before)
        self.assertEqual(copy.GetVoxelValueUnits().GetAsString(), units.GetAsString())
        self.delayDisplay("Bridge round trip passed")

    def test_PETITE_Compare(self):
        """Error maps are volume - reference (and |.|); metrics are PETITELib's on the same arrays."""
        import numpy as np

        from PETITELib.metrics import compare_volumes

        self.delayDisplay("Compare")
        reference, affine = self._obliqueVolume(seed=1)
        prediction = reference.copy()
        prediction[4:10, 5:9, 3:7] += 250.0
        referenceNode = slicer_bridge.new_volume_node(slicer.mrmlScene, "long", reference, affine=affine)
        predictionNode = slicer_bridge.new_volume_node(slicer.mrmlScene, "recon", prediction, affine=affine)

        result = PETITELogic().compare(predictionNode, referenceNode)
        signed = slicer_bridge.read_volume(result["signedError"]).array
        expected = np.zeros_like(reference)
        expected[4:10, 5:9, 3:7] = 250.0
        np.testing.assert_allclose(signed, expected, atol=1e-3)
        np.testing.assert_allclose(slicer_bridge.read_volume(result["absoluteError"]).array, np.abs(expected), atol=1e-3)
        np.testing.assert_array_equal(slicer_bridge.ijk_to_ras(result["signedError"]), affine)
        expectedMetrics = compare_volumes(prediction, reference, spacing=slicer_bridge.read_volume(referenceNode).spacing)
        self.assertEqual(set(result["metrics"]), set(expectedMetrics))
        for key, value in expectedMetrics.items():
            self.assertAlmostEqual(result["metrics"][key], value, places=6)
        self.delayDisplay("Compare passed")

    def test_PETITE_Job(self):
        """A background job reports progress, is cancelled by its token, and finishes on this thread."""
        from PETITELib.progress import report

        self.delayDisplay("Background job")

        def work(progress, cancel):
            for step in range(1, 4):
                cancel.check()
                report(progress, "demo", step, 3, loss=0.5 / step)
            return 42

        job = PETITEJob("demo", work, finish=lambda result: result + 1).start()
        self.assertTrue(job.wait(10))
        self.assertEqual(job.finish(), 43)
        self.assertEqual([e.step for e in job.events()], [1, 2, 3])

        cancelled = PETITEJob("demo", work)
        cancelled.cancel()
        cancelled.start().wait(10)
        with self.assertRaises(Cancelled):
            cancelled.finish()
        self.delayDisplay("Background job passed")

    def test_PETITE_Widget(self):
        """The panel (needs the Slicer application): parameter node to GUI, Compare fills the table."""
        self.delayDisplay("Panel")
        slicer.util.selectModule("PETITE")
        widget = slicer.modules.PETITEWidget
        array, affine = self._obliqueVolume(seed=2)
        referenceNode = slicer_bridge.new_volume_node(slicer.mrmlScene, "long", array, affine=affine)
        reconNode = slicer_bridge.new_volume_node(slicer.mrmlScene, "recon", array + 100.0, affine=affine)
        parameters = widget.logic.getParameterNode()
        parameters.reconstructedVolume = reconNode
        parameters.referenceVolume = referenceNode
        self.assertEqual(widget.ui.referenceVolumeSelector.currentNode(), referenceNode)
        self.assertTrue(widget.ui.compareButton.enabled)
        widget.ui.compareButton.click()
        self.assertIsNotNone(parameters.signedErrorVolume)
        self.assertNotEqual(widget.ui.metricsTable.item(1, 0).text(), "-")
        self.delayDisplay("Panel passed")
