"""Which base model and adapter files a reconstruction uses: ``--base``/``--adapter`` resolved.

Each value may be a file path, the name of a shipped model (``base``, ``scanner4``...), or
for the adapter ``auto`` (the shipped adapter whose recorded scanner matches the volume's
matrix and voxel spacing, see :mod:`PETITELib.scanner_matching`) or ``none``. No base means
the shipped base. Shipped files are checked against the manifest's SHA-256 before use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

from ..errors import PetiteError
from .manifest import Manifest, ZooEntry, load_manifest, shipped_entry_for, verify_entry

AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class ModelChoice:
    """The files to use: ``base`` (path), ``adapter`` (path or None), and ``note``, one line
    saying what was chosen (e.g. which adapter ``auto`` picked), empty when nothing was chosen."""

    base: Path
    adapter: Optional[Path]
    note: str = ""


def _checked_path(value) -> Path:
    path = Path(value)
    entry = shipped_entry_for(path)
    return verify_entry(entry) if entry is not None else path


def _shipped(manifest: Optional[Manifest], name: str, kind: str, option: str) -> ZooEntry:
    entry = manifest.entry(name) if manifest is not None else None
    if entry is None or entry.kind != kind:
        names = [e.name for e in manifest.entries if e.kind == kind] if manifest is not None else []
        where = f"shipped {kind}s: {', '.join(names)}" if names else "no model zoo is installed"
        raise PetiteError(f"{option} {name}: no such file, and not a shipped {kind} name ({where})")
    verify_entry(entry)
    return entry


def _manifest_or_none(folder) -> Optional[Manifest]:
    try:
        return load_manifest(folder)
    except PetiteError:
        return None


def _is_file_value(value) -> bool:
    text = str(value)
    return Path(text).exists() or text.endswith(".safetensors") or "/" in text or "\\" in text


def choose_models(base=None, adapter=None, *, shape: Optional[Sequence[int]] = None,
                  spacing: Optional[Sequence[float]] = None, dicom: Optional[Mapping[str, str]] = None,
                  zoo=None) -> ModelChoice:
    """Resolve ``base`` and ``adapter`` (see the module docstring) for a volume of ``shape``
    (x, y, z voxels) and ``spacing`` (x, y, z mm), needed only for ``auto``; ``zoo``: the zoo
    folder (default :func:`PETITELib.zoo.zoo_dir`). PetiteError (one line) for an unknown name,
    a missing zoo when one is needed, or a corrupted shipped file.
    """
    manifest = _manifest_or_none(zoo) if zoo is not None else _manifest_or_none(None)
    if base is None or str(base) == "":
        if manifest is None or manifest.base is None:
            raise PetiteError("no base model given and no shipped base model found: pass --base "
                              "BASE.safetensors (from 'petite pretrain') or run 'petite zoo rebuild'")
        base_path, base_entry = verify_entry(manifest.base), manifest.base
    elif _is_file_value(base):
        base_path = _checked_path(base)
        base_entry = shipped_entry_for(base_path)
    else:
        base_entry = _shipped(manifest, str(base), "base", "--base")
        base_path = base_entry.path

    if adapter is None or str(adapter) == "" or str(adapter).lower() == NONE:
        return ModelChoice(base_path, None)
    if str(adapter).lower() == AUTO:
        return _auto_adapter(manifest, base_path, base_entry, shape, spacing, dicom)
    if _is_file_value(adapter):
        return ModelChoice(base_path, _checked_path(adapter))
    entry = _shipped(manifest, str(adapter), "adapter", "--adapter")
    return ModelChoice(base_path, entry.path)


def _auto_adapter(manifest, base_path, base_entry, shape, spacing, dicom) -> ModelChoice:
    from ..scanner_matching import best_match, describe_scanner, scanner_profile

    if shape is None or spacing is None:
        raise PetiteError("--adapter auto: needs the volume's matrix and voxel spacing")
    grid = f"{'x'.join(str(int(n)) for n in shape)} at {'x'.join(f'{float(v):g}' for v in spacing)} mm"
    candidates = [] if manifest is None or base_entry is None else [
        (scanner_profile(e.scanner), e) for e in manifest.adapters if e.record.get("base") == base_entry.name]
    chosen = best_match(candidates, shape, spacing, dicom)
    if chosen is None:
        why = "no shipped adapter for this base" if not candidates else "no shipped adapter fits"
        return ModelChoice(base_path, None, f"adapter auto: {why} a {grid} volume; using the base model alone")
    verify_entry(chosen)
    return ModelChoice(base_path, chosen.path, f"adapter auto: chose '{chosen.name}' "
                                               f"({describe_scanner(scanner_profile(chosen.scanner))})")
