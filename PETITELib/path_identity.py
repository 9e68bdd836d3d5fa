"""The output-versus-input rule: no output of a command may be one of its inputs or another output.

Paths are compared as real paths (symbolic links followed, ``..`` resolved, case folded where the
file system ignores case) and, where both exist, as files (same device and inode: hard links).
The rule holds with and without ``--overwrite``: an output that is an input would destroy it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from .errors import PetiteError


def real_path(path) -> str:
    """``path`` with links followed and ``..`` resolved (also for paths that do not exist yet)."""
    return os.path.normcase(os.path.realpath(os.path.abspath(os.fspath(path))))


def same_file(first, second) -> bool:
    """True when two paths name one file or folder: equal real paths, or one inode (hard links)."""
    if real_path(first) == real_path(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (yet)
        return False


def _inside(path, folder) -> bool:
    inner, outer = real_path(path), real_path(folder)
    return inner != outer and inner.startswith(outer.rstrip(os.sep) + os.sep)


def check_distinct(outputs: Mapping[str, object], inputs: Mapping[str, object],
                   replaced_folders: Optional[Mapping[str, object]] = None) -> None:
    """Refuse (one-line :class:`PetiteError` naming both paths and options) an output that is an
    input, two outputs that are one file, or an input inside a folder the command replaces.

    outputs, inputs: ``{what: path}`` where ``what`` names the option (``"-o"``, ``"--base"``,
    ``"cohort file"``...); None values are skipped. replaced_folders: ``{what: folder}`` removed
    and written afresh by the command (e.g. a checkpoint folder with ``--overwrite``).
    """
    outputs = {what: Path(p) for what, p in outputs.items() if p is not None}
    inputs = {what: Path(p) for what, p in inputs.items() if p is not None}
    for out_what, output in outputs.items():
        for in_what, source in inputs.items():
            if same_file(output, source):
                raise PetiteError(f"{output}: the output ({out_what}) is the input {source} ({in_what}); "
                                  "writing it would destroy the input: choose another output path")
    names = list(outputs.items())
    for index, (first_what, first) in enumerate(names):
        for second_what, second in names[index + 1:]:
            if same_file(first, second):
                raise PetiteError(f"{second}: two outputs are one file ({first_what} and {second_what}); "
                                  "choose another output path")
    for folder_what, folder in (replaced_folders or {}).items():
        if folder is None:
            continue
        for in_what, source in inputs.items():
            if same_file(folder, source) or _inside(source, folder):
                raise PetiteError(f"{folder}: this folder ({folder_what}) is replaced by the command but holds "
                                  f"the input {source} ({in_what}); move the input or choose another output")
