"""Exclusive locks on outputs: one PETITE command at a time may write a given file or folder.

A lock is a small file beside the output, ``.NAME.petite-lock`` (NAME: the output's name after
links are followed), created with ``O_CREAT | O_EXCL`` (atomic on every local file system, also
on Windows) and holding the owner's process id, host name and a random token. A second command
on the same output gets one line naming the first one's process id. A lock left behind by a
process that no longer runs (``kill -9``, power loss) is stale and taken over; a lock made on
another host (shared folder) cannot be checked and is respected. No ``fcntl``: portable.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Optional

from .errors import PetiteError
from .path_identity import real_path

LOCK_SUFFIX = ".petite-lock"
UNREADABLE_GRACE_SECONDS = 30.0  # an empty lock file younger than this is being written, not stale


def lock_file(path) -> Path:
    """Where the lock of output ``path`` lives: ``.NAME.petite-lock`` beside its real path."""
    real = Path(real_path(path))
    return real.parent / f".{real.name}{LOCK_SUFFIX}"


def _windows_process_alive(pid: int) -> bool:
    import ctypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return ctypes.get_last_error() == 5  # ERROR_ACCESS_DENIED: it exists, it is not ours
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (this process counts: two jobs in one Slicer)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _read(path: Path) -> Optional[dict]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def _is_stale(path: Path, record: Optional[dict]) -> bool:
    if record is None:  # empty or garbled: a crash between create and write, or being written now
        try:
            return time.time() - path.stat().st_mtime > UNREADABLE_GRACE_SECONDS
        except OSError:
            return True  # gone meanwhile: try again
    if record.get("host") != socket.gethostname():
        return False
    return not process_alive(record["pid"])


def _remove_stale(path: Path, record: Optional[dict]) -> None:
    """Remove a stale lock without removing a fresh one another process created meanwhile: move it
    aside (atomic), and put it back if what was moved is not the stale lock that was judged."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.replace(path, aside)
    except OSError:
        return  # someone else removed it first
    moved = _read(aside)
    if (moved or {}).get("token") != (record or {}).get("token"):
        try:
            os.link(aside, path)  # fails if a newer lock exists: then that one stands
        except OSError:
            pass
    try:
        os.unlink(aside)
    except OSError:
        pass


class OutputLock:
    """An exclusive claim on one output path (file or folder), held from :meth:`acquire` to
    :meth:`release`; also a context manager. ``what`` names the option in error messages."""

    def __init__(self, path, what: str = "output") -> None:
        self.path = Path(path)
        self.what = what
        self.file = lock_file(path)
        self.token = uuid.uuid4().hex
        self.held = False

    def _refusal(self, record: Optional[dict]) -> PetiteError:
        if record is None:
            who = "another PETITE command (its lock file is being written)"
        else:
            host = "" if record.get("host") == socket.gethostname() else f" on host {record.get('host')}"
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("started", 0))))
            who = f"another PETITE command (pid {record['pid']}{host}, since {since})"
        return PetiteError(f"{self.path}: {self.what} is in use by {who}; wait until it ends, or remove "
                           f"{self.file} if that process is gone")

    def acquire(self) -> "OutputLock":
        """Take the lock, taking over a stale one; PetiteError (one line) if another command holds it."""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token,
                  "started": time.time(), "command": " ".join(os.path.basename(a) for a in sys.argv[:2])}
        for _ in range(5):
            try:
                descriptor = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(self.file)
                if not _is_stale(self.file, holder):
                    raise self._refusal(holder) from None
                _remove_stale(self.file, holder)
                continue
            except OSError as exc:
                raise PetiteError(f"{self.path}: cannot create the lock file {self.file} "
                                  f"({exc.strerror or exc})") from None
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(record))
            self.held = True
            return self
        raise self._refusal(_read(self.file))

    def release(self) -> None:
        """Give the lock up (only if this lock still owns the file)."""
        if not self.held:
            return
        self.held = False
        holder = _read(self.file)
        if holder is not None and holder.get("token") == self.token:
            try:
                os.unlink(self.file)
            except OSError:
                pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
