"""Optional extras: without nilearn or matplotlib the jobs that need them stop with one line naming
the extra to install, before any work; everything else works without them."""
import subprocess
import sys
from pathlib import Path

import pytest

from bad_input_support import refused
from PETITELib.errors import PetiteError
from PETITELib.extras import installed, require

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "SampleData"


@pytest.fixture
def without(monkeypatch):
    """Make the given top-level modules unimportable for the test (as if not installed)."""
    def hide(*modules):
        for module in modules:
            monkeypatch.setitem(sys.modules, module, None)
    return hide


def test_require_names_the_extra_and_the_missing_package(without):
    require("sim", "petite simulate")  # installed here
    assert installed("numpy") and not installed("no_such_module_petite")
    without("nilearn")
    with pytest.raises(PetiteError, match=r'^petite simulate needs nilearn, which is not installed: '
                                          r'pip install "petite\[sim\]"$'):
        require("sim", "petite simulate")
    require("figures", "a figure")  # matplotlib is still there


def test_simulate_without_nilearn_is_one_line_naming_the_extra(without, tmp_path, capsys):
    without("nilearn")
    line = refused(capsys, ["simulate", "--out", str(tmp_path / "sim"), "--scanners", "5", "--subjects", "1",
                            "--mode", "fast"], ["petite simulate"], folders=[tmp_path])
    assert 'pip install "petite[sim]"' in line


def test_reconstruct_with_a_reference_without_matplotlib_is_refused_before_any_work(without, tmp_path, capsys):
    without("matplotlib")
    out = tmp_path / "out.nii.gz"
    line = refused(capsys, ["reconstruct", str(SAMPLE / "scanner4_short.nii.gz"), "-o", str(out),
                            "--reference", str(SAMPLE / "scanner4_long.nii.gz")],
                   ["out_comparison.png"], inputs=[SAMPLE / "scanner4_short.nii.gz"], folders=[tmp_path])
    assert 'pip install "petite[figures]"' in line


def test_the_core_package_imports_without_the_extras():
    """Every module of PETITELib imports with nilearn and matplotlib absent (they load lazily)."""
    code = ("import sys, pkgutil, importlib, PETITELib; sys.modules['nilearn'] = sys.modules['matplotlib'] = None; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(PETITELib.__path__, 'PETITELib.') "
            "if not m.name.startswith('PETITELib.federated')]; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
