"""Portability: no Unix-only module imported at module level in PETITELib or the Slicer module, no POSIX-only
`os` function used without a Windows guard, and the host's global state (random generators, cuDNN flags,
thread counts) is left as a training job found it."""
import ast
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
UNIX_ONLY = {"resource", "fcntl", "termios", "pwd", "grp"}


def _module_level_imports(path: Path):
    """Names imported by statements that run when the module is imported (not inside functions or
    classes' methods): top level, and inside top-level if/try/with blocks and class bodies."""
    def walk(statements):
        for statement in statements:
            if isinstance(statement, ast.Import):
                yield from (alias.name.split(".")[0] for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom) and statement.level == 0 and statement.module:
                yield statement.module.split(".")[0]
            elif isinstance(statement, (ast.If, ast.Try, ast.With, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for block in getattr(statement, field, []) or []:
                        yield from walk(block.body if isinstance(block, ast.ExceptHandler) else [block])

    return set(walk(ast.parse(path.read_text()).body))


def test_no_unix_only_module_is_imported_at_module_level():
    files = sorted((REPO / "PETITELib").rglob("*.py")) + sorted((REPO / "PETITE").glob("*.py"))
    assert len(files) > 50
    offenders = {str(path.relative_to(REPO)): sorted(_module_level_imports(path) & UNIX_ONLY) for path in files}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_check_sees_guarded_and_nested_module_level_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("try:\n    import resource\nexcept ImportError:\n    pass\n"
                      "if True:\n    from fcntl import flock\n"
                      "def later():\n    import termios\n")
    assert _module_level_imports(sample) & UNIX_ONLY == {"resource", "fcntl"}


POSIX_ONLY_OS = {"wait3", "wait4", "WNOHANG", "fork", "getuid", "geteuid", "getgid", "getloadavg", "killpg",
                 "setsid", "getpgid", "setpgrp", "sched_getaffinity", "statvfs", "mkfifo", "chown", "nice"}
GUARDS = ("os.name", "sys.platform", "AttributeError", "getattr(os,")


def _unguarded_posix_calls(path: Path, root: Path = REPO):
    """``os.<POSIX-only name>`` used in a function (or module) whose source shows no guard for
    Windows (an ``os.name``/``sys.platform`` test, an ``AttributeError`` handler, ``getattr(os, ...)``)."""
    source = path.read_text()
    tree = ast.parse(source)
    scopes = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def scope_of(node):
        enclosing = [f for f in scopes if f.lineno <= node.lineno <= f.end_lineno]
        return min(enclosing, key=lambda f: f.end_lineno - f.lineno) if enclosing else tree

    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                and node.attr in POSIX_ONLY_OS):
            text = ast.get_source_segment(source, scope_of(node)) or source
            if not any(guard in text for guard in GUARDS):
                yield f"{path.relative_to(root)}:{node.lineno}: os.{node.attr}"


def test_posix_only_os_functions_are_used_only_behind_a_windows_guard():
    files = sorted((REPO / "PETITELib").rglob("*.py")) + sorted((REPO / "PETITE").glob("*.py"))
    assert [hit for path in files for hit in _unguarded_posix_calls(path)] == []


def test_the_guard_check_flags_an_unguarded_call(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef bare(pid):\n    return os.wait4(pid, os.WNOHANG)\n\n"
                      "def guarded():\n    return getattr(os, 'getloadavg', None)\n"
                      "def tested():\n    if os.name != 'nt':\n        return os.geteuid()\n")
    assert list(_unguarded_posix_calls(sample, tmp_path)) == ["sample.py:4: os.wait4", "sample.py:4: os.WNOHANG"]


def test_a_training_job_leaves_the_hosts_random_state_and_cudnn_flags_as_it_found_them():
    from PETITELib.engine.finetuning import finetune
    from PETITELib.engine.jobs import host_state_kept, keeps_host_state, seed_everything
    from PETITELib.engine.pretraining import pretrain

    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    flags = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    expected = (random.random(), np.random.random(), torch.rand(1).item())
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    with pytest.raises(RuntimeError):
        with host_state_kept():
            seed_everything(0)
            assert torch.backends.cudnn.deterministic
            raise RuntimeError("the job failed")
    assert (random.random(), np.random.random(), torch.rand(1).item()) == expected
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark) == flags
    assert torch.get_num_threads() == threads
    for entry_point in (finetune, pretrain):  # the public training functions are wrapped
        assert entry_point.__wrapped__ is not None and entry_point.__code__ is keeps_host_state(len).__code__
