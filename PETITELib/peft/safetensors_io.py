"""safetensors files with one JSON metadata document (never pickle), checked on every read.

The JSON document is stored in the safetensors header's string metadata under the key
``"petite"``. It always has ``format`` (what the file is), ``format_version`` (an integer) and
``tensors_sha256``: the SHA-256 of every tensor in the file, in name order, with its name,
dtype and shape (:func:`PETITELib.peft.model.tensors_sha256`). Reading a file checks that the
metadata is a JSON object of the expected format and version, that the tensors hash to the
recorded SHA-256 (a flipped bit or an edited tensor is refused) and that every floating-point
tensor is finite. Files of format version 1 (written before checksums, e.g. a hospital's
adapters from an earlier release) are still read, with every check but the checksum. Each file kind checks its own fields by type with :func:`check_fields`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, Mapping, Tuple

import torch

from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes
from .model import tensors_sha256

METADATA_KEY = "petite"
TENSORS_SHA256_KEY = "tensors_sha256"
CHECKSUM_VERSION = 2  # the first format version whose files record tensors_sha256
SHA256 = "a SHA-256 (64 hexadecimal digits)"  # a field kind for check_fields
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KINDS = {str: "a string", dict: "a JSON object", bool: "true or false", int: "an integer", list: "a list"}


def _json_type(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    return {dict: "a JSON object", list: "a list", str: "a string", int: "an integer", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)


def to_json(value: dict, what: str) -> str:
    """``json.dumps`` of ``value`` (sorted keys); PetiteError if it is not JSON-serialisable."""
    if not isinstance(value, dict):
        raise PetiteError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PetiteError(f"{what} is not JSON-serialisable: {exc}") from None


def _has_kind(value, kind) -> bool:
    if kind is SHA256:
        return isinstance(value, str) and bool(_HEX64.match(value))
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_fields(path, document: Mapping, fields: Mapping[str, object]) -> None:
    """Refuse (one-line PetiteError naming ``path``) metadata that lacks one of ``fields`` or holds a
    value of another kind: ``fields`` maps each key to ``str``, ``int``, ``bool``, ``dict``, ``list``
    or :data:`SHA256`."""
    for key, kind in fields.items():
        if key not in document:
            raise PetiteError(f"{path}: metadata has no '{key}' (damaged file, or not written by PETITE)")
        if not _has_kind(document[key], kind):
            expected = kind if kind is SHA256 else _KINDS[kind]
            raise PetiteError(f"{path}: metadata '{key}' is {_json_type(document[key])}, expected {expected}")


def write_tensors(path, tensors: Dict[str, torch.Tensor], metadata: dict, overwrite: bool = False) -> Path:
    """Write ``tensors`` (moved to the CPU, made contiguous) and ``metadata`` plus the tensors'
    SHA-256 (``tensors_sha256``) atomically to ``path``."""
    from safetensors.torch import save

    path = Path(path)
    payload = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    document = {**metadata, TENSORS_SHA256_KEY: tensors_sha256(payload)}
    data = save(payload, metadata={METADATA_KEY: to_json(document, f"{path}: metadata")})
    atomic_write_bytes(path, data, overwrite=overwrite)
    return path


def file_format(path) -> str:
    """The ``format`` recorded in a PETITE safetensors file (PetiteError if it has none)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise PetiteError(f"{path}: file not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            document = json.loads((handle.metadata() or {})[METADATA_KEY])
    except Exception:
        raise PetiteError(f"{path}: not a PETITE model or adapter file") from None
    if not isinstance(document, dict):
        raise PetiteError(f"{path}: metadata is not a JSON object (damaged file, or not written by PETITE)")
    return str(document.get("format", ""))


def read_metadata(path, expected_format: str, supported_version: int) -> dict:
    """The JSON metadata of a PETITE safetensors file, checked for type, format and version.

    Raises :class:`PetiteError` naming ``path`` if it is missing, not safetensors, its metadata
    is not a JSON object, not a PETITE file of ``expected_format``, or has a format version
    that is not an integer from 1 to ``supported_version`` (a newer one: written by a newer PETITE).
    From :data:`CHECKSUM_VERSION` on, the metadata must hold ``tensors_sha256``.
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
    except (KeyError, ValueError, TypeError):
        raise PetiteError(f"{path}: no PETITE metadata (not a PETITE {expected_format} file)") from None
    if not isinstance(metadata, dict):
        raise PetiteError(f"{path}: metadata is {_json_type(metadata)}, expected a JSON object (damaged file?)")
    if metadata.get("format") != expected_format:
        raise PetiteError(f"{path}: is a '{metadata.get('format')}' file, expected '{expected_format}'")
    version = metadata.get("format_version")
    if not _has_kind(version, int) or version < 1:
        raise PetiteError(f"{path}: format version {json.dumps(version)} is not valid (expected an integer "
                          f"from 1 to {supported_version})")
    if version > supported_version:
        raise PetiteError(f"{path}: format version {version} is not supported (this PETITE reads "
                          f"up to {supported_version}); update PETITE")
    if version >= CHECKSUM_VERSION:
        check_fields(path, metadata, {TENSORS_SHA256_KEY: SHA256})
    return metadata


def read_tensors(path) -> Dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU, read into memory (no file stays mapped;
    no checks: see :func:`read_file`)."""
    from safetensors.torch import load

    try:
        return load(Path(path).read_bytes())
    except Exception as exc:
        raise PetiteError(f"{path}: cannot read tensors ({type(exc).__name__})") from None


def check_finite(path, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse (one line naming ``path`` and the tensor) a floating-point tensor holding NaN or Inf."""
    for name in sorted(tensors):
        tensor = tensors[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int(tensor.numel() - torch.isfinite(tensor).sum())
            raise PetiteError(f"{path}: tensor {name} holds {bad} NaN or Inf values (damaged file)")


def read_file(path, expected_format: str, supported_version: int) -> Tuple[dict, Dict[str, torch.Tensor]]:
    """(metadata, tensors) of a PETITE safetensors file: metadata checked (:func:`read_metadata`),
    tensors checked against the recorded SHA-256 (format version 2 on) and for NaN/Inf."""
    metadata = read_metadata(path, expected_format, supported_version)
    tensors = read_tensors(path)
    found = tensors_sha256(tensors)
    if metadata["format_version"] >= CHECKSUM_VERSION and found != metadata[TENSORS_SHA256_KEY]:
        raise PetiteError(f"{path}: tensor data do not match the SHA-256 recorded in the file ({found[:12]}... "
                          f"instead of {metadata[TENSORS_SHA256_KEY][:12]}...): damaged or edited file")
    check_finite(path, tensors)
    return metadata, tensors


def copy_in_current_format(source, destination, expected_format: str, current_version: int) -> bool:
    """Copy PETITE file ``source`` (checked by :func:`read_file`) to ``destination`` (replaced if it
    exists): byte for byte when it is already in ``current_version``, else rewritten with the same
    tensors and metadata in ``current_version`` (which records the tensors' SHA-256). A model's
    weights SHA-256 (and with it every adapter's match to its base) does not change. Returns whether
    the file was rewritten."""
    import shutil

    metadata, tensors = read_file(source, expected_format, current_version)
    if metadata["format_version"] == current_version:
        shutil.copyfile(source, destination)
        return False
    document = {key: value for key, value in metadata.items() if key != TENSORS_SHA256_KEY}
    write_tensors(destination, tensors, {**document, "format_version": current_version}, overwrite=True)
    return True


def check_dtype(path, name: str, tensor: torch.Tensor, expected: torch.dtype) -> None:
    """Refuse (one line) a stored tensor whose dtype differs from the model's (never cast silently)."""
    if tensor.dtype != expected:
        raise PetiteError(f"{path}: tensor {name} is {str(tensor.dtype).replace('torch.', '')}, the model "
                          f"expects {str(expected).replace('torch.', '')} (damaged or foreign file)")

