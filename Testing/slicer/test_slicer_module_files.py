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

from petite_slicer_support import MODULE_FILE, REPO, SLICER_API, UI_FILE, parameterNodeWrapper

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

needs_api = pytest.mark.skipif(not SLICER_API.is_file(), reason="Slicer API reference not found at "
                                                                 "../shared/slicer-api (relative to the repository)")


def _connector_rules() -> dict:
    """Slicer's GUI connectors (slicer_api.json): field kind -> widget classes that can show it."""
    rules = json.loads(SLICER_API.read_text())["parameter_node_wrapper"]["gui_connector_summary_by_type"]
    return {kind: set(widgets) for kind, widgets in rules.items()}

# Properties of a Slicer extensions catalog entry (Slicer/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json).
CATALOG_ENTRY_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                            "dicom_support_rule", "build_subdirectory", "enabled", "tier"}
CATALOG_ENTRY_REQUIRED = {"$schema", "category", "scm_url"}

# The schema's required fields, and the extension's files its metadata must point to.
SCREENSHOT_FOLDER = "docs/screenshots"


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


@needs_api
def test_module_file_imports_and_its_parameter_node_has_defaults(petite, scene):
    logic = petite.PETITELogic(modelsDir="/nonexistent/models")
    parameters = logic.getParameterNode()
    assert parameters.parameterNode.GetClassName() == "vtkMRMLScriptedModuleNode"
    assert logic.getParameterNode().parameterNode is parameters.parameterNode  # one per scene
    assert (parameters.adapter, parameters.device, parameters.peft) == ("auto", petite.Device.AUTO, "petite")
    assert parameters.outputVolume is None  # a new output volume by default
    assert (parameters.baseModel, parameters.cohortDir, parameters.metrics) == ("", "", "")
    assert logic.adaptersDir == Path("/nonexistent/models/adapters")
    for cls in ("PETITE", "PETITEWidget", "PETITELogic", "PETITETest"):
        assert hasattr(petite, cls)
    fields = typing.get_type_hints(petite.PETITEParameterNode, include_extras=True)
    rules = _connector_rules()
    assert {name: _field_kind(t) for name, t in fields.items() if _field_kind(t) not in rules} == {}
    with pytest.raises(TypeError):
        parameters.epochs = "3"  # checked like Slicer's validators
    with pytest.raises(ValueError):
        parameters.epochs = -1


@needs_api
def test_the_parameter_node_stand_in_reads_unset_paths_as_slicer_does(scene):
    """Slicer's PathSerializer gives an unset pathlib.Path field ``pathlib.Path()`` and reads the
    stored text back through ``Path(...)``, so an unset path reads (and a ctkPathLineEdit bound to
    it shows) ".". The stand-in does the same; the module therefore keeps its two paths as str
    fields, shown by the panel itself, so that unset paths stay empty."""
    import pathlib

    @parameterNodeWrapper
    class Paths:
        folder: pathlib.Path
        name: str

    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")
    paths = Paths(node)
    assert paths.folder == pathlib.Path(".") and str(paths.folder) == "." and paths.name == ""
    assert node.GetParameter("folder") == "."
    paths.folder = pathlib.Path("/data/cohort")
    assert Paths(node).folder == pathlib.Path("/data/cohort")  # stored in the node, read back
    assert "ctkPathLineEdit" in _connector_rules()["path"]  # such a field can only bind to path widgets


@needs_api
def test_unset_path_fields_are_not_bound_to_path_widgets(petite):
    """No pathlib.Path field (which would show "."); the path widgets are not bound."""
    import pathlib

    fields = typing.get_type_hints(petite.PETITEParameterNode, include_extras=True)
    assert [name for name, t in fields.items() if _field_kind(t) == "path"] == []
    bound = {w.get("name") for w in _ui_tree().iter("widget") if w.find("property[@name='SlicerParameterName']")
             is not None}
    assert not {"baseModelPathLineEdit", "cohortPathLineEdit"} & bound
    assert petite.optionalPath(pathlib.Path()) is None and petite.optionalPath("") is None


@needs_api
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
    rules = _connector_rules()
    for widget in root.iter("widget"):
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            field = prop.find("string").text
            assert field in fields, f"{widget.get('name')} is bound to unknown field {field}"
            kind = _field_kind(fields[field])
            assert widget.get("class") in rules[kind], f"{widget.get('name')} cannot show a {kind} field"


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
    shipped = _repository_files("PETITELib")  # all of it: the jobs run the `petite` command line
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
                            "Resources/Models/manifest.json", *models, "Resources/SampleData/scanner4_short.nii.gz",
                            "Resources/SampleData/scanner4_long.nii.gz"}
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


CATALOG_ENTRY_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
                       "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str,
                       "enabled": bool, "tier": int}
REPOSITORY_URL = re.compile(r"https://(?:raw\.githubusercontent\.com|github\.com)/petite-pet/PETITE[^\s\"'<>)]*")


def _cmake_values() -> dict:
    """The EXTENSION_* variables of the top-level CMakeLists.txt (quoted values may hold parentheses)."""
    found = re.findall(r'set\((EXTENSION_\w+) (?:"([^"]*)"|([^)\s]+))', (REPO / "CMakeLists.txt").read_text())
    return {name: quoted or bare for name, quoted, bare in found}


def _committed_files() -> set:
    run = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return set(run.stdout.splitlines())


def _repository_path(url: str):
    """(path in the repository or "" for its root, #anchor or "") of a URL pointing into it."""
    url, _, anchor = url.partition("#")
    match = re.match(r"https://raw\.githubusercontent\.com/petite-pet/PETITE/[^/]+/(.+)", url) or \
        re.match(r"https://github\.com/petite-pet/PETITE/(?:blob|tree)/[^/]+/(.+)", url)
    return (match.group(1) if match else ""), anchor


def _anchors(markdown: str) -> set:
    """GitHub's anchors of a Markdown file's headings."""
    headings = re.findall(r"^#+\s+(.*)$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_extension_metadata_and_catalog_entry_agree():
    cmake = (REPO / "CMakeLists.txt").read_text()
    values = _cmake_values()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert values.get("EXTENSION_" + key), f"EXTENSION_{key} missing"
    assert values["EXTENSION_CATEGORY"] == "Nuclear Medicine"
    assert values["EXTENSION_DEPENDS"].split()[0] == "PyTorch"
    assert "add_subdirectory(PETITE)" in cmake
    description = values["EXTENSION_DESCRIPTION"]
    assert "simulated scans" in description and "research use" in description.lower()

    entry = json.loads((REPO / "PETITE.json").read_text())
    assert CATALOG_ENTRY_REQUIRED <= set(entry) <= CATALOG_ENTRY_PROPERTIES
    for key, value in entry.items():
        assert isinstance(value, CATALOG_ENTRY_TYPES[key]), key
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/"
                                       "slicer-extension-catalog-entry-schema-v1.0.2.json")
    assert entry["build_dependencies"] == ["PyTorch"] and all(isinstance(d, str) for d in entry["build_dependencies"])
    assert entry["category"] == values["EXTENSION_CATEGORY"]
    assert 1 <= entry["tier"] <= 5
    assert entry.get("scm_type", "git") in ("git", "local")
    assert values["EXTENSION_HOMEPAGE"].startswith(entry["scm_url"])
    assert values["EXTENSION_ICONURL"].endswith("/PETITE.png")


def test_every_url_into_this_repository_names_a_committed_file():
    """The Extensions Index resolves these: icon, screenshots, homepage (with its anchor), and the
    links of the module's help; each must name a file committed here (or a heading of the README)."""
    values = _cmake_values()
    urls = [values["EXTENSION_HOMEPAGE"], values["EXTENSION_ICONURL"], *values["EXTENSION_SCREENSHOTURLS"].split()]
    urls += REPOSITORY_URL.findall(MODULE_FILE.read_text())
    committed = _committed_files()
    screenshots = values["EXTENSION_SCREENSHOTURLS"].split()
    assert len(screenshots) >= 2
    for url in urls:
        path, anchor = _repository_path(url)
        target = path or "README.md"
        assert target in committed, f"{url}: {target} is not committed"
        if anchor:
            assert anchor in _anchors((REPO / target).read_text()), f"{url}: no heading #{anchor} in {target}"
    for url in screenshots:
        path, _ = _repository_path(url)
        assert path.startswith(SCREENSHOT_FOLDER + "/") and path.endswith(".png")
        data = (REPO / path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert min(struct.unpack(">II", data[16:24])) >= 256  # a real picture, not a placeholder


def test_licence_and_readme_as_the_catalogue_asks():
    licence = (REPO / "LICENSE").read_text()
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert "LICENSE" in _committed_files()
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Use in 3D Slicer"):]
    section = section[:section.find("\n## ", 1)]
    assert "Apache-2.0" in readme or "Apache License 2.0" in readme
    assert "without Slicer" in readme  # why the repository name need not start with "Slicer"
    for url in _cmake_values()["EXTENSION_SCREENSHOTURLS"].split():
        assert f"]({_repository_path(url)[0]})" in readme  # the README shows the screenshots
    assert "research use" in section.lower() and "simulated" in section and "docs/slicer.md" in section


def test_icons_are_the_same_128_pixel_png():
    top, module = REPO / "PETITE.png", REPO / "Resources" / "Icons" / "PETITE.png"
    data = top.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (128, 128)
    assert module.read_bytes() == data


def test_slicer_dependencies_agree_with_the_package_and_the_tested_pins(petite):
    """The minimum versions the panel checks are the package's (pyproject.toml), the versions it
    installs are the tested ones (requirements-dev.txt), each with --no-deps and never torch."""
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    minimum = dict(re.match(r"([\w-]+)>=([\w.]+)(,<[\w.]+)?$", d.replace(" ", "")).groups()[:2]
                   for d in dependencies if ">=" in d)
    pins = dict(re.match(r"([\w-]+)==([\w.+]+)", line).groups()
                for line in (REPO / "requirements-dev.txt").read_text().splitlines() if "==" in line)
    for dependency in petite.DEPENDENCIES:
        assert pins[dependency.name] == dependency.pin, dependency.name
        if dependency.name in minimum:
            assert minimum[dependency.name] == dependency.minimum, dependency.name
        assert petite.versionTuple(dependency.pin) >= petite.versionTuple(dependency.minimum)
    library = {name for name in minimum} - {"torch", "numpy", "scipy", "matplotlib", "nilearn"}
    assert library <= {d.name for d in petite.DEPENDENCIES}  # all the `petite` process needs in Slicer
    arguments = petite.PETITELogic.installArguments(petite.DEPENDENCIES)
    assert arguments[:4] == ["-m", "pip", "install", "--no-deps"]
    assert not [a for a in arguments if a.startswith("torch")]
    assert all("==" in a for a in arguments if not a.startswith("-") and a not in ("pip", "install"))
    assert petite.versionTuple("2.13.0+cpu") == (2, 13, 0) and petite.versionTuple(petite.TORCH_MINIMUM) >= (2, 8)


def test_missing_and_outdated_dependencies_are_found_by_version(petite):
    logic = petite.PETITELogic
    assert logic.missingDependencies() == []  # this environment has them all
    assert logic.torchProblem() is None
    fake = [petite.Dependency("petite-no-such-package", "1.0", "1.0"), petite.Dependency("numpy", "999", "999.0")]
    assert logic.missingDependencies(fake) == fake  # absent, and present but too old
