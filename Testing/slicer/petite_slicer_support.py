"""Shared by the Slicer tests and the screenshot script: repository paths, PET-like heads on oblique
grids, and the stand-ins the module file needs where the slicer-core wheel has no Slicer application.

The wheel gives real MRML (``import slicer``: scene, volume nodes, storage nodes, ``slicer.util``,
slice logics and displayable managers) but no application. :func:`install_stand_ins` adds, for
what ``PETITE/PETITE.py`` imports and the wheel lacks:

- ``qt``: a module with no attributes at all, so that any use of Qt outside the widget (which is
  not built here) fails loudly instead of passing;
- ``slicer.i18n``: ``tr``/``translate`` return the text unchanged;
- ``slicer.ScriptedLoadableModule``: the four base classes, with the logic's parameter-node
  lookup done as Slicer does it (a singleton ``vtkMRMLScriptedModuleNode`` per module);
- ``slicer.parameterNodeWrapper``: a ``parameterNodeWrapper`` that stores every field in the
  parameter node as Slicer's serializers do (so values are saved with the scene and read back
  the same way), with Slicer's defaults for unset fields: ``""`` for str, 0, False, the first
  enum member, None for a node, and ``pathlib.Path()`` (which reads as ``.``) for a path;
  assigning checks the type (and ``WithinRange``) as Slicer's validators do. No GUI binding.
"""
import enum
import importlib.util
import pathlib
import sys
import types
import typing
import unittest
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODULE_FILE = REPO / "PETITE" / "PETITE.py"
UI_FILE = REPO / "Resources" / "UI" / "PETITE.ui"  # the module's resources are at the top level
SLICER_API = REPO.parent / "shared" / "slicer-api" / "slicer_api.json"


def oblique_affine(spacing=(2.03642, 2.03642, 2.425), degrees=(20.0, -12.0),
                   origin=(-120.5, 98.25, -60.0)) -> np.ndarray:
    """A 4x4 IJK-to-RAS (mm) with anisotropic spacing, rotated about two axes (oblique)."""
    a, b = np.deg2rad(degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def pet_head(shape=(30, 26, 22), seed=0, counts_scale=4000.0) -> np.ndarray:
    """(x, y, z) float32 PET-like head in Bq/mL: hot cortex ring, warm inside, air outside, noise."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    radius = np.sqrt(sum(((g - c) / (0.42 * n)) ** 2 for g, c, n in zip(grid, centre, shape)))
    activity = np.where(radius < 1, np.where(radius > 0.75, 4.0, 1.0), 0.0)
    noisy = counts_scale * activity + rng.normal(0.0, 0.02 * counts_scale, shape) * (radius < 1.1)
    return np.clip(noisy, 0, None).astype(np.float32)


def new_scene():
    """A new MRML scene with the node classes Slicer's modules register at start-up that PETITE
    uses beyond the core ones (the colour legend of the Colors module)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    scene.RegisterNodeClass(slicer.vtkMRMLColorLegendDisplayNode())
    return scene


#
# Stand-ins for the parts of Slicer the wheel lacks
#


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


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value):
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{value} is not within [{self.minimum}, {self.maximum}]")


PATH_TYPES = (pathlib.Path, pathlib.PurePath, pathlib.PosixPath, pathlib.WindowsPath,
              pathlib.PurePosixPath, pathlib.PureWindowsPath)


class _Field:
    """How one field is stored in the parameter node (Slicer's serializer rules for its type)."""

    def __init__(self, name, annotation, default):
        self.name = name
        base, self.validators = annotation, []
        if typing.get_origin(annotation) is typing.Annotated:
            base, *extras = typing.get_args(annotation)
            self.validators = [extra for extra in extras if hasattr(extra, "validate")]
        self.type = base
        self.default = default if default is not _UNSET else self.type_default()

    def is_node(self):
        import slicer

        return isinstance(self.type, type) and issubclass(self.type, slicer.vtkMRMLNode)

    def type_default(self):
        if self.is_node():
            return None
        if isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            return next(iter(self.type))
        if self.type in PATH_TYPES:
            return self.type()  # reads back as "."
        return {int: 0, float: 0, str: "", bool: False}[self.type]

    def check(self, value):
        if self.is_node():
            if value is not None and not isinstance(value, self.type):
                raise TypeError(f"{self.name}: {type(value).__name__} is not a {self.type.__name__}")
        else:
            allowed = (int, float) if self.type is float else self.type
            if value is None or not isinstance(value, allowed) or (self.type is int and isinstance(value, bool)):
                raise TypeError(f"{self.name}: {value!r} is not a {self.type.__name__}")
        for validator in self.validators:
            validator.validate(value)

    def write(self, node, value):
        self.check(value)
        if self.is_node():
            node.SetParameter(self.name, "")
            node.SetNodeReferenceID(self.name, value.GetID() if value is not None else None)
        elif isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            node.SetParameter(self.name, value.name)
        elif self.type is bool:
            node.SetParameter(self.name, "True" if value else "False")
        else:
            node.SetParameter(self.name, str(value))

    def read(self, node):
        if self.is_node():
            return node.GetNodeReference(self.name)
        text = node.GetParameter(self.name)
        if isinstance(self.type, type) and issubclass(self.type, enum.Enum):
            return self.type[text]
        if self.type is bool:
            return text == "True"
        return self.type(text)


_UNSET = object()


def parameterNodeWrapper(cls):
    """Stand-in for Slicer's decorator (see the module docstring)."""
    fields = {name: _Field(name, annotation, cls.__dict__.get(name, _UNSET))
              for name, annotation in typing.get_type_hints(cls, include_extras=True).items()}

    def __init__(self, parameterNode):
        object.__setattr__(self, "parameterNode", parameterNode)
        for field in fields.values():
            if not parameterNode.HasParameter(field.name):
                field.write(parameterNode, field.default)

    def make_property(field):
        return property(lambda self: field.read(self.parameterNode),
                        lambda self, value: field.write(self.parameterNode, value))

    namespace = {"__init__": __init__, "__doc__": cls.__doc__, "__module__": cls.__module__,
                 "__annotations__": cls.__annotations__, "_fields": fields}
    namespace.update({name: make_property(field) for name, field in fields.items()})
    return type(cls.__name__, (), namespace)


def stand_in_modules():
    """The stand-in modules, by name (see the module docstring)."""
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


def install_stand_ins():
    """Add the stand-in modules that are missing; returns the names added (to remove them again)."""
    added = []
    for name, module in stand_in_modules().items():
        if name not in sys.modules:
            sys.modules[name] = module
            added.append(name)
    return added


def import_module_file():
    """Import PETITE/PETITE.py as module ``PETITE`` (the stand-ins must be installed)."""
    spec = importlib.util.spec_from_file_location("PETITE", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["PETITE"] = module
    spec.loader.exec_module(module)
    return module
