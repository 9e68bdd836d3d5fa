"""What every command does with its outputs before the work starts, in one place.

``with claim_outputs(files={...}, folders={...}, inputs={...}):`` checks the output-versus-input
rule (:mod:`.path_identity`), tries every output location (:mod:`.output_probe`) and takes an
exclusive lock on each output (:mod:`.output_lock`), then runs the block. Locks are released when
the block ends; folders the claim created are removed again if the block fails and left them
empty. Whether an existing output may be replaced (``--overwrite``) stays the command's rule.
:func:`write_all` writes a command's several output files as a set: all of them, or none.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Mapping, Optional

from .output_lock import OutputLock
from .output_probe import prepare_output, remove_created
from .path_identity import check_distinct

PathMap = Mapping[str, object]


def _present(paths: Optional[PathMap]) -> dict:
    return {what: Path(p) for what, p in (paths or {}).items() if p is not None and str(p) != ""}


@contextmanager
def claim_outputs(files: Optional[PathMap] = None, *, folders: Optional[PathMap] = None,
                  inputs: Optional[PathMap] = None, replaced_folders: Optional[PathMap] = None) -> Iterator[None]:
    """Claim outputs for the duration of a ``with`` block (see the module docstring).

    files, folders: ``{what: path}`` of the output files and output folders (``what`` names the
    option in messages, e.g. ``"-o"``, ``"--out"``); inputs: ``{what: path}`` of every file the
    command reads (volumes, reference, base, adapter, cohort files); replaced_folders: output
    folders the command removes and writes afresh, which must not hold an input. None values
    are skipped. Raises a one-line :class:`PetiteError` before the block runs if a rule fails.
    """
    files, folders, inputs = _present(files), _present(folders), _present(inputs)
    check_distinct({**files, **folders}, inputs, _present(replaced_folders))
    created: List[Path] = []
    try:
        for what, path in files.items():
            created += prepare_output(path, what)
        for what, path in folders.items():
            created += prepare_output(path, what, folder=True)
        with ExitStack() as locks:
            for what, path in {**files, **folders}.items():
                locks.enter_context(OutputLock(path, what))
            yield
    except BaseException:
        remove_created(created)
        raise


def _identity(path: Path):
    return (path.stat().st_ino, path.stat().st_mtime_ns) if path.exists() else None


def write_all(write: Callable[[], object], paths: List[Path]):
    """Run ``write`` (which writes ``paths``, each atomically) and return what it returns; if it
    fails, remove those of ``paths`` it had written already, so no half set of results is left."""
    paths = [Path(p) for p in paths]
    before = {path: _identity(path) for path in paths}
    try:
        return write()
    except BaseException:
        for path in paths:
            if path.exists() and _identity(path) != before[path]:
                path.unlink()
        raise
