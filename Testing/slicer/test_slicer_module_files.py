"""The extension's files: module import, .ui contents, static API check, packaging lists, metadata."""
import ast
import json
import re
import struct
import subprocess
import sys
import typing
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from petite_slicer_support import MODULE_FILE, REPO, UI_FILE

pytestmark = pytest.mark.slicer

# Widget classes a .ui loaded by slicer.util.loadUI can instantiate and that this panel may use:
# Slicer and CTK Designer plugins, plus plain Qt widgets and layouts.
SLICER_WIDGET_CLASSES = {
    "qMRMLWidget", "qMRMLNodeComboBox", "qMRMLSubjectHierarchyComboBox", "qMRMLSliderWidget",
    "qMRMLSpinBox", "qMRMLRangeWidget",
    "ctkCollapsibleButton", "ctkCollapsibleGroupBox", "ctkPathLineEdit", "ctkDirectoryButton",
    "ctkCheckBox", "ctkComboBox", "ctkSliderWidget", "ctkDoubleSpinBox", "ctkRangeWidget",
    "ctkCheckablePushButton", "ctkMenuButton",
    "QWidget", "QFrame", "QGroupBox", "QLabel", "QPushButton", "QToolButton", "QCheckBox", "QRadioButton",
    "QComboBox", "QLineEdit", "QSpinBox", "QDoubleSpinBox", "QProgressBar", "QTableWidget", "QTextEdit",
    "QPlainTextEdit", "QTabWidget", "QStackedWidget", "QScrollArea",
}
QT_LAYOUT_CLASSES = {"QVBoxLayout", "QHBoxLayout", "QFormLayout", "QGridLayout"}

# Which widget class can show which kind of parameter-node field (Slicer's GUI connectors).
BINDABLE = {"node": {"qMRMLNodeComboBox"}, "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
            "enum": {"QComboBox", "ctkComboBox"}, "bool": {"QCheckBox", "ctkCheckBox"},
            "int": {"QSpinBox", "QSlider", "ctkSliderWidget"}, "float": {"QDoubleSpinBox", "ctkDoubleSpinBox"},
            "str": {"QLineEdit", "QTextEdit"}}

# Properties of a Slicer extensions catalog entry (Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json).
CATALOG_ENTRY_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
CATALOG_ENTRY_REQUIRED = {"$schema", "category", "scm_url"}

# PETITELib files the Slicer extension does not ship: the command-line interface.
NOT_SHIPPED = ("PETITELib/cli.py", "PETITELib/commands/")


def _ui_tree():
    return ET.parse(UI_FILE).getroot()


def _field_kind(annotation) -> str:
    import enum
    import pathlib

    base = typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return "enum"
    if base is pathlib.Path:
        return "path"
    if isinstance(base, type) and base.__name__.startswith("vtkMRML"):
        return "node"
    return base.__name__


def _cmake_list(text: str, name: str):
    """The items of ``set(NAME item ...)`` in a CMake file, or [] when NAME is not set."""
    match = re.search(rf"set\({name}\s(.*?)\)", text, flags=re.S)
    return match.group(1).split() if match else []


def test_module_file_imports_and_its_parameter_node_has_defaults(petite, scene):
    logic = petite.PETITELogic(modelsDir="/nonexistent/models")
    parameters = logic.getParameterNode()
    assert parameters.parameterNode.GetClassName() == "vtkMRMLScriptedModuleNode"
    assert logic.getParameterNode().parameterNode is parameters.parameterNode  # one per scene
    assert (parameters.adapter, parameters.device, parameters.peft) == ("auto", petite.Device.AUTO, "petite")
    assert parameters.outputVolume is None  # a new output volume by default
    assert logic.adaptersDir == Path("/nonexistent/models/adapters")
    for cls in ("PETITE", "PETITEWidget", "PETITELogic", "PETITETest"):
        assert hasattr(petite, cls)
    fields = typing.get_type_hints(petite.PETITEParameterNode, include_extras=True)
    assert {name: _field_kind(t) for name, t in fields.items() if _field_kind(t) not in BINDABLE} == {}


def test_ui_has_every_name_the_code_uses_and_only_slicer_widget_classes(petite):
    root = _ui_tree()
    widgets = {w.get("name"): w.get("class") for w in root.iter("widget")}
    layouts = {w.get("name") for w in root.iter("layout")}
    used = {node.attr for node in ast.walk(ast.parse(MODULE_FILE.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
            and node.value.attr == "ui" and isinstance(node.value.value, ast.Name) and node.value.value.id == "self"}
    assert used, "the module looks up no self.ui names?"
    assert sorted(used - set(widgets) - layouts) == []
    assert sorted(set(widgets.values()) - SLICER_WIDGET_CLASSES) == []
    assert sorted({w.get("class") for w in root.iter("layout")} - QT_LAYOUT_CLASSES) == []

    fields = typing.get_type_hints(petite.PETITEParameterNode, include_extras=True)
    for widget in root.iter("widget"):
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            field = prop.find("string").text
            assert field in fields, f"{widget.get('name')} is bound to unknown field {field}"
            kind = _field_kind(fields[field])
            assert widget.get("class") in BINDABLE[kind], f"{widget.get('name')} cannot show a {kind} field"


def _checker() -> Path:
    return REPO.parent / "shared" / "slicer-api" / "check_slicer_module.py"


@pytest.mark.skipif(not _checker().is_file(), reason="Slicer API checker not found at ../shared/slicer-api "
                                                      "(relative to the repository)")
def test_slicer_api_checker_reports_no_problems():
    run = subprocess.run([sys.executable, str(_checker()), str(MODULE_FILE.relative_to(REPO)),
                          str(UI_FILE.relative_to(REPO))],  # not beside the module: given explicitly
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout + run.stderr) == (0, "")


def _repository_files(folder: str):
    """Files under a top-level folder of the repository, as paths relative to it (no caches)."""
    return sorted(p.relative_to(REPO).as_posix() for p in (REPO / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")


def test_cmake_lists_every_petitelib_file_and_every_resource():
    text = (REPO / "PETITE" / "CMakeLists.txt").read_text()
    assert not re.search(r"file\s*\(\s*GLOB", text, flags=re.I)
    listed = _cmake_list(text, "PETITELIB_PYTHON_SCRIPTS")
    shipped = [p for p in _repository_files("PETITELib") if not p.startswith(NOT_SHIPPED)]
    assert {"missing from PETITE/CMakeLists.txt": sorted(set(shipped) - set(listed)),
            "listed but not on disk or not shipped": sorted(set(listed) - set(shipped))} == {
        "missing from PETITE/CMakeLists.txt": [], "listed but not on disk or not shipped": []}

    # Resources/ at the top level, copied with PETITELib (SOURCE_DIR: the repository root) into
    # the scripted-modules folder, where resourcePath() looks once installed.
    resources = [r.replace("${MODULE_NAME}", "PETITE") for r in _cmake_list(text, "PETITE_RESOURCES")]
    on_disk = _repository_files("Resources")
    assert sorted(resources) == on_disk
    manifest = json.loads((REPO / "Resources" / "Models" / "manifest.json").read_text())
    models = {f"Resources/Models/{model['file']}" for model in manifest["models"]}
    assert set(on_disk) == {"Resources/Icons/PETITE.png", "Resources/UI/PETITE.ui",
                            "Resources/Models/manifest.json", *models}
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\)", text, flags=re.S).group(1).split()
    arguments = dict(zip(call[::2], call[1::2]))
    assert arguments["SCRIPTS"] == '"${PETITELIB_PYTHON_SCRIPTS}"'
    assert arguments["RESOURCES"] == '"${PETITE_RESOURCES}"'
    assert arguments["SOURCE_DIR"] == "${PROJECT_SOURCE_DIR}"
    assert arguments["DESTINATION_DIR"] == "${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}"
    assert "NO_INSTALL_SUBDIR" in call

    module = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", text, flags=re.S).group(1)
    assert "WITH_GENERIC_TESTS" in module and "RESOURCES" not in module
    assert not (REPO / "PETITE" / "Resources").exists()  # one Resources folder, at the top


def test_resources_are_found_in_a_source_checkout_and_when_installed(petite, tmp_path, monkeypatch):
    """Source checkout: PETITE/PETITE.py finds ../Resources. Installed: Resources/ beside PETITE.py wins."""
    assert petite.extensionPath("Resources/UI/PETITE.ui") == str(UI_FILE)
    assert petite.PETITEWidget().resourcePath("UI/PETITE.ui") == str(UI_FILE)  # setup() loads the .ui by it
    assert petite.extensionPath(petite.ICON_FILE) == str(REPO / "Resources" / "Icons" / "PETITE.png")
    assert petite.extensionPath("PETITELib") == str(REPO / "PETITELib")

    installed = tmp_path / "qt-scripted-modules"  # as the build lays it out (PETITE/CMakeLists.txt)
    (installed / "Resources" / "UI").mkdir(parents=True)
    (installed / "Resources" / "UI" / "PETITE.ui").write_text("<ui/>")
    monkeypatch.setattr(petite, "__file__", str(installed / "PETITE.py"))
    assert petite.extensionPath("Resources/UI/PETITE.ui") == str(installed / "Resources" / "UI" / "PETITE.ui")


def test_extension_metadata_and_catalog_entry_agree():
    cmake = (REPO / "CMakeLists.txt").read_text()
    values = dict(re.findall(r'set\((EXTENSION_\w+) "?(.*?)"?\)', cmake))
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert values.get("EXTENSION_" + key), f"EXTENSION_{key} missing"
    assert values["EXTENSION_CATEGORY"] == "Nuclear Medicine"
    assert values["EXTENSION_DEPENDS"].split()[0] == "PyTorch"
    assert "add_subdirectory(PETITE)" in cmake

    entry = json.loads((REPO / "PETITE.json").read_text())
    assert CATALOG_ENTRY_REQUIRED <= set(entry) <= CATALOG_ENTRY_PROPERTIES
    assert entry["build_dependencies"] == ["PyTorch"]
    assert entry["category"] == values["EXTENSION_CATEGORY"]
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert values["EXTENSION_HOMEPAGE"].startswith(entry["scm_url"])
    assert values["EXTENSION_ICONURL"].endswith("/PETITE.png")


def test_icons_are_the_same_128_pixel_png():
    top, module = REPO / "PETITE.png", REPO / "Resources" / "Icons" / "PETITE.png"
    data = top.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
    assert module.read_bytes() == data


def test_requirements_are_the_package_requirements(petite):
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {petite.requirementName(d): d.replace(" ", "") for d in dependencies}
    for requirement in petite.REQUIREMENTS + petite.SAMPLE_DATA_REQUIREMENTS:
        assert by_name.get(petite.requirementName(requirement)) == requirement
    assert "torch" in {petite.requirementName(r) for r in petite.REQUIREMENTS}
