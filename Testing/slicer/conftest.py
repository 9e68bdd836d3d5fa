"""Fixtures for the Slicer tests: a real MRML scene (``slicer-core`` wheel) and the module file.

The wheel gives real MRML (``import slicer``: scene, volume nodes, storage nodes,
``slicer.util``) but no Slicer application. Minimal stand-ins for what the module file imports
and the wheel lacks are installed for the duration of the session only:

- ``qt``: an empty module (the module file uses Qt only inside the widget, which is not built here);
- ``slicer.i18n``: ``tr``/``translate`` return the text unchanged;
- ``slicer.ScriptedLoadableModule``: the four base classes, with the logic's parameter-node
  lookup done as Slicer does it (a singleton ``vtkMRMLScriptedModuleNode`` per module);
- ``slicer.parameterNodeWrapper``: ``parameterNodeWrapper`` gives each field its class default
  (else None) as a plain attribute, and ``WithinRange``; nothing is serialised.

Every test runs without a shipped model zoo (``$PETITE_ZOO_DIR`` at an empty folder), whatever
Resources/Models holds; test_slicer_zoo.py makes its own.
"""
import importlib.util
import sys
import types
import unittest

import pytest

from petite_slicer_support import MODULE_FILE


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
        self.moduleName = self.__class__.__name__


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent
        self.moduleName = self.__class__.__name__[:-len("Widget")]

    def setup(self):
        pass


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = self.__class__.__name__[:-len("Logic")]
        self.isSingletonParameterNode = True

    def getParameterNode(self):
        import slicer

        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", self.moduleName)
            node.SetSingletonTag(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
        return node


class ScriptedLoadableModuleTest(unittest.TestCase):
    def delayDisplay(self, message, requestedDelay=None, msec=None):
        pass


def parameterNodeWrapper(cls):
    fields = list(cls.__annotations__)

    def __init__(self, parameterNode):
        self.parameterNode = parameterNode
        for name in fields:
            setattr(self, name, getattr(cls, name, None))

    cls.__init__ = __init__
    return cls


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


def _stand_in_modules():
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for cls in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleLogic,
                ScriptedLoadableModuleTest):
        setattr(slm, cls.__name__, cls)
    pnw = types.ModuleType("slicer.parameterNodeWrapper")
    pnw.parameterNodeWrapper = parameterNodeWrapper
    pnw.WithinRange = WithinRange
    return {"qt": types.ModuleType("qt"), "slicer.i18n": i18n, "slicer.ScriptedLoadableModule": slm,
            "slicer.parameterNodeWrapper": pnw}


@pytest.fixture(scope="session")
def slicer_core():
    """The ``slicer`` package of the slicer-core wheel (tests skip when it is not installed)."""
    pytest.importorskip("slicer_core", reason="needs the slicer-core wheel (pip install slicer-core)")
    import slicer

    return slicer


@pytest.fixture
def scene(slicer_core):
    """A fresh MRML scene, also set as ``slicer.mrmlScene`` for the duration of the test."""
    previous = getattr(slicer_core, "mrmlScene", None)
    slicer_core.mrmlScene = slicer_core.vtkMRMLScene()
    yield slicer_core.mrmlScene
    slicer_core.mrmlScene.Clear()
    slicer_core.mrmlScene = previous


@pytest.fixture(scope="session")
def petite(slicer_core):
    """The module file PETITE/PETITE.py, imported with the stand-ins (removed again after the session)."""
    stand_ins = _stand_in_modules()
    added = [name for name in stand_ins if name not in sys.modules]
    for name in added:
        sys.modules[name] = stand_ins[name]
    spec = importlib.util.spec_from_file_location("PETITE", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["PETITE"] = module
    spec.loader.exec_module(module)
    yield module
    for name in added + ["PETITE"]:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def no_shipped_zoo(tmp_path_factory, monkeypatch):
    """No shipped model zoo (``$PETITE_ZOO_DIR`` at an empty folder), so a zoo in Resources/Models
    does not change what the tests see; test_slicer_zoo.py points it at a zoo of its own."""
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path_factory.mktemp("no-zoo")))
