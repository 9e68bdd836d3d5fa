"""safetensors files with one JSON metadata document (never pickle).

The JSON document is stored in the safetensors header's string metadata under the key
``"petite"``; it always has ``format`` (what the file is) and ``format_version``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import torch

from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes

METADATA_KEY = "petite"


def to_json(value: dict, what: str) -> str:
    """``json.dumps`` of ``value`` (sorted keys); PetiteError if it is not JSON-serialisable."""
    if not isinstance(value, dict):
        raise PetiteError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PetiteError(f"{what} is not JSON-serialisable: {exc}") from None


def write_tensors(path, tensors: Dict[str, torch.Tensor], metadata: dict, overwrite: bool = False) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) and ``metadata`` atomically to ``path``."""
    from safetensors.torch import save

    path = Path(path)
    payload = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    data = save(payload, metadata={METADATA_KEY: to_json(metadata, f"{path}: metadata")})
    atomic_write_bytes(path, data, overwrite=overwrite)
    return path


def read_metadata(path, expected_format: str, supported_version: int) -> dict:
    """The JSON metadata of a PETITE safetensors file, checked for format and version.

    Raises :class:`PetiteError` naming ``path`` if it is missing, not safetensors, not a
    PETITE file of ``expected_format``, or of a newer format version.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PetiteError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except Exception as exc:  # safetensors raises several types for damaged files
        raise PetiteError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from None
    try:
        metadata = json.loads(header[METADATA_KEY])
    except (KeyError, ValueError):
        raise PetiteError(f"{path}: no PETITE metadata (not a PETITE {expected_format} file)") from None
    if metadata.get("format") != expected_format:
        raise PetiteError(f"{path}: is a '{metadata.get('format')}' file, expected '{expected_format}'")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > supported_version:
        raise PetiteError(f"{path}: format version {version} is not supported (this PETITE reads "
                          f"up to {supported_version}); update PETITE")
    return metadata


def read_tensors(path) -> Dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU (call :func:`read_metadata` first)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise PetiteError(f"{path}: cannot read tensors ({type(exc).__name__})") from None


def read_file(path, expected_format: str, supported_version: int) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """(metadata, tensors) of a PETITE safetensors file (see :func:`read_metadata`)."""
    metadata = read_metadata(path, expected_format, supported_version)
    return metadata, read_tensors(path)
