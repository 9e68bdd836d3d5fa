"""Trying an output location before the work starts: can the file (or folder) be created there?

For each output the missing parent folders are created (and removed again if the command
fails), then a small probe file is written, flushed to disk and removed in the folder that will
hold the output. That finds, in a fraction of a second rather than after the computation, an
immutable or read-only folder, a full disk, a path under ``/proc``, a file where a folder is
due, or a folder where a file is due. A write that still fails later (the disk filled up
meanwhile) is reported in one line by :func:`PETITELib.nifti_io.atomic_write_bytes`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List

from .errors import PetiteError

PROBE_PREFIX = ".petite-probe-"
PROBE_BYTES = 4096


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _replaceable(path: Path) -> bool:
    """Whether an existing file can be replaced by a rename: not immutable and not read-only where
    that blocks a rename (Windows; or a file of another user). A user's own read-only file can."""
    if os.access(path, os.W_OK):
        return True
    if os.name == "nt":
        return False
    return os.geteuid() != 0 and path.stat().st_uid == os.geteuid()


def _existing_ancestor(folder: Path) -> Path:
    ancestor = folder
    while not os.path.lexists(ancestor) and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    return ancestor


def remove_created(folders: List[Path]) -> None:
    """Remove the folders :func:`prepare_output` created (deepest first), where they are still empty."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


def _make_folders(folder: Path, path: Path, what: str) -> List[Path]:
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise PetiteError(f"{path}: cannot create the {what}: {ancestor} is a file, not a folder")
    missing = []
    walk = folder
    while walk != ancestor:
        missing.append(walk)
        walk = walk.parent
    created: List[Path] = []
    for step in reversed(missing):
        try:
            os.mkdir(step)
        except FileExistsError:
            continue
        except OSError as exc:
            remove_created(created)
            raise PetiteError(f"{path}: cannot create the {what}: folder {step} cannot be made "
                              f"({_reason(exc)})") from None
        created.append(step)
    return created


def _write_probe(folder: Path, path: Path, what: str) -> None:
    probe = None
    try:
        descriptor, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=str(folder))
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(b"\0" * PROBE_BYTES)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise PetiteError(f"{path}: cannot write the {what} in {folder} ({_reason(exc)})") from None
    finally:
        if probe is not None and os.path.exists(probe):
            os.unlink(probe)


def prepare_output(path, what: str = "output", folder: bool = False) -> List[Path]:
    """Check that output ``path`` (a file, or with ``folder`` a folder) can be written, before any work.

    Creates missing parent folders (returned, so the caller can remove them if the command fails;
    see :func:`remove_created`) and writes, syncs and removes a probe file where the output will
    be. Raises a one-line :class:`PetiteError` naming ``path`` (and ``what``, the option) when the
    location cannot take it. An existing output is left as it is (whether it may be replaced is
    the command's ``--overwrite`` rule), but one that could not be replaced is refused.
    """
    path = Path(path)
    if folder:
        if os.path.lexists(path) and not path.is_dir():
            raise PetiteError(f"{path}: the {what} must be a folder, and this is a file")
        target = path
    else:
        if path.is_dir():
            raise PetiteError(f"{path}: the {what} must be a file, and this is a folder")
        if path.exists() and not _replaceable(path):
            raise PetiteError(f"{path}: the {what} exists and cannot be replaced (read-only or immutable)")
        target = path.parent
    created = _make_folders(target, path, what)
    try:
        _write_probe(target, path, what)
    except PetiteError:
        remove_created(created)
        raise
    return created
