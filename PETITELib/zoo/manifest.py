"""The zoo's ``manifest.json``: which model files ship, how they were made, how well they do.

Layout (``format`` "petite-zoo", ``format_version`` 1)::

    {"models": [{"name": "base", "kind": "base", "file": "unetr-cpu-base.safetensors",
                 "sha256": "...", "size": 27904276, "backbone": "unetr", "preset": "cpu",
                 "spec": "", "scanner": {...}, "command": "petite pretrain ...", "seed": 0,
                 "metrics": {...}},
                {"name": "scanner4", "kind": "adapter", "base": "base", ...}, ...,
                {"name": "cvtgan-base", "kind": "base", "backbone": "cvtgan", ...},
                {"name": "cvtgan-scanner4", "kind": "adapter", "base": "cvtgan-base", ...}, ...],
     "rebuild": {"commands": [...], "seconds": ..., "machine": {...}}, ...}

Files sit beside the manifest. The folder is ``$PETITE_ZOO_DIR`` when set, else
``Resources/Models`` next to the ``PETITELib`` package (the same relative place in a source
checkout and in an installed Slicer extension). Nothing is ever downloaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from ..nifti_io import file_sha256

MANIFEST_NAME = "manifest.json"
ZOO_FORMAT = "petite-zoo"
ZOO_FORMAT_VERSION = 1


def zoo_dir() -> Path:
    """The folder of the shipped models: ``$PETITE_ZOO_DIR``, else ``<PETITELib>/../Resources/Models``."""
    if os.environ.get("PETITE_ZOO_DIR"):
        return Path(os.environ["PETITE_ZOO_DIR"])
    return Path(__file__).resolve().parents[2] / "Resources" / "Models"


@dataclass(frozen=True)
class ZooEntry:
    """One shipped file: ``name`` (what ``--adapter`` accepts), ``kind`` ("base" or "adapter"),
    ``path``, expected ``sha256`` and ``size`` (bytes), and the rest of its manifest record."""

    name: str
    kind: str
    path: Path
    sha256: str
    size: int
    record: Dict[str, object] = field(default_factory=dict)

    @property
    def scanner(self) -> dict:
        """The scanner description recorded for the entry (the adapter's target scanner)."""
        return dict(self.record.get("scanner") or {})


@dataclass(frozen=True)
class Manifest:
    """A zoo folder's manifest: its ``folder``, ``entries`` in manifest order, and the raw ``document``."""

    folder: Path
    entries: List[ZooEntry]
    document: Dict[str, object]

    @property
    def base(self) -> Optional[ZooEntry]:
        """The default shipped base model (the first ``base`` entry: UNETR's), or None."""
        return next((e for e in self.entries if e.kind == "base"), None)

    @property
    def bases(self) -> List[ZooEntry]:
        """The shipped base models (one per backbone), in manifest order; the first is the default."""
        return [e for e in self.entries if e.kind == "base"]

    @property
    def adapters(self) -> List[ZooEntry]:
        """The shipped adapters, in manifest order."""
        return [e for e in self.entries if e.kind == "adapter"]

    def entry(self, name: str) -> Optional[ZooEntry]:
        """The entry called ``name`` (case-insensitive), or None."""
        return next((e for e in self.entries if e.name.lower() == str(name).lower()), None)


def load_manifest(folder=None) -> Manifest:
    """Read ``folder/manifest.json`` (default :func:`zoo_dir`); PetiteError (one line) when it is
    missing or malformed. Files are not hashed here: see :func:`verify_entry`."""
    folder = Path(folder) if folder is not None else zoo_dir()
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise PetiteError(f"{path}: no model zoo here (run 'petite zoo rebuild' or set PETITE_ZOO_DIR)")
    try:
        document = json.loads(path.read_text())
        if document.get("format") != ZOO_FORMAT:
            raise ValueError(f"format is {document.get('format')!r}, not {ZOO_FORMAT!r}")
        entries = [ZooEntry(str(m["name"]), str(m["kind"]), folder / str(m["file"]), str(m["sha256"]),
                            int(m["size"]), dict(m)) for m in document["models"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise PetiteError(f"{path}: malformed model-zoo manifest ({exc})") from None
    return Manifest(folder, entries, document)


def verify_entry(entry: ZooEntry) -> Path:
    """Check a shipped file against its manifest record (size, then SHA-256); return its path.

    PetiteError, one line naming the file, when it is missing, truncated or corrupted.
    """
    path = entry.path
    if not path.is_file():
        raise PetiteError(f"{path}: shipped model '{entry.name}' is missing (reinstall, or 'petite zoo rebuild')")
    size = path.stat().st_size
    if size != entry.size:
        raise PetiteError(f"{path}: shipped model '{entry.name}' is corrupted ({size} bytes, manifest says "
                          f"{entry.size}); reinstall, or 'petite zoo rebuild'")
    found = file_sha256(path)
    if found != entry.sha256:
        raise PetiteError(f"{path}: shipped model '{entry.name}' is corrupted (SHA-256 {found[:12]}..., manifest "
                          f"says {entry.sha256[:12]}...); reinstall, or 'petite zoo rebuild'")
    return path


def shipped_entry_for(path) -> Optional[ZooEntry]:
    """The zoo entry whose file is ``path`` (so a shipped file given by path is verified too), or None."""
    path = Path(path)
    try:
        manifest = load_manifest(path.parent)
    except PetiteError:
        return None
    resolved = path.resolve()
    return next((e for e in manifest.entries if e.path.resolve() == resolved), None)
