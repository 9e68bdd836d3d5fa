"""Fixtures for the Slicer tests: a real MRML scene (``slicer-core`` wheel) and the module file,
imported with the stand-ins of :mod:`petite_slicer_support` for what the wheel lacks (installed for
the session only).

Every test runs without a shipped model zoo (``$PETITE_ZOO_DIR`` at an empty folder), whatever
Resources/Models holds, unless it asks for the ``shipped_zoo`` fixture; jobs run the real
``petite`` command line in a separate process (this Python, one torch thread).
"""
import os
import sys

import pytest

from petite_slicer_support import REPO, import_module_file, install_stand_ins, new_scene


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
    slicer_core.mrmlScene = new_scene()
    yield slicer_core.mrmlScene
    slicer_core.mrmlScene.Clear()
    slicer_core.mrmlScene = previous


@pytest.fixture(scope="session")
def petite(slicer_core):
    """The module file PETITE/PETITE.py, imported with the stand-ins (removed again after the session)."""
    added = install_stand_ins()
    module = import_module_file()
    yield module
    for name in added + ["PETITE"]:
        sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def no_shipped_zoo(tmp_path_factory, monkeypatch):
    """No shipped model zoo (``$PETITE_ZOO_DIR`` at an empty folder), so a zoo in Resources/Models
    does not change what the tests see; ``shipped_zoo`` and test_slicer_zoo.py set their own.
    Job processes inherit the variable."""
    monkeypatch.setenv("PETITE_ZOO_DIR", str(tmp_path_factory.mktemp("no-zoo")))


@pytest.fixture
def shipped_zoo(monkeypatch):
    """The model zoo shipped in Resources/Models, in use."""
    monkeypatch.delenv("PETITE_ZOO_DIR")
    return REPO / "Resources" / "Models"


def one_thread_launcher(petite, extra_python_path=()):
    """A process launcher for the logic: the module's own (:func:`launchProcess`, the real
    subprocess) with one torch thread (a shared 2-core test machine) and ``extra_python_path``
    folders searched first."""
    def launch(args, environment):
        environment = dict(environment, OMP_NUM_THREADS="1")
        if extra_python_path:
            environment["PYTHONPATH"] = os.pathsep.join([*map(str, extra_python_path), environment["PYTHONPATH"]])
        return petite.launchProcess(args, environment)

    return launch


@pytest.fixture
def launcher(petite):
    return one_thread_launcher(petite)
