"""Adapter files: only the tensors a PEFT run trained, plus what they belong to.

safetensors tensors under their model names (e.g. ``vit.blocks.0.attn.qkv.lora.up``, or a
base name such as ``vit.blocks.0.mlp.linear1.bias`` for BitFit). JSON metadata: ``format``
"petite-adapter", ``format_version`` (2), ``tensors_sha256`` (of the file's tensors, checked on
every read), ``backbone``, ``preset``, ``base_sha256`` (of the base weights it was trained on),
``spec`` (canonical PEFT spec), ``scanner`` (free-form dict describing the target scanner) and
``training`` (free-form summary). Reading checks every field's type, the tensors' SHA-256 and
finiteness; loading onto a model also checks each tensor's name, shape and dtype.

Files written while ``vpt`` meant the gated form (now ``gvpt``) say ``vpt`` and hold
``*.prompt_gate`` tensors, which the joint-softmax ``vpt`` never has: reading such a file gives
its spec with ``gvpt`` for ``vpt``, so it loads as what it was trained as (the file is not changed).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..errors import PetiteError
from .model import (applied_peft, apply_peft, base_weights_sha256, peft_state_dict, remove_peft,
                    trainable_parameters)
from .safetensors_io import SHA256, TENSORS_SHA256_KEY, check_dtype, check_fields, read_file, to_json, write_tensors
from .spec import PeftSpec, parse_spec

ADAPTER_FORMAT = "petite-adapter"
ADAPTER_FORMAT_VERSION = 2  # 2: tensors_sha256 recorded and checked
PROMPT_GATE_SUFFIX = ".prompt_gate"  # gated-prompt tensors: written by gvpt (and by vpt before it was joint)
ADAPTER_FIELDS = {"backbone": str, "preset": str, "base_sha256": SHA256, "spec": str, "scanner": dict,
                  "training": dict}


@dataclass(frozen=True)
class AdapterMetadata:
    """What an adapter file says about itself (see the module docstring)."""

    backbone: str
    preset: str
    base_sha256: str
    spec: str
    scanner: Dict[str, object] = field(default_factory=dict)
    training: Dict[str, object] = field(default_factory=dict)
    format_version: int = ADAPTER_FORMAT_VERSION


@dataclass(frozen=True)
class AdapterFile:
    """An adapter file read into memory: ``path``, ``metadata`` and ``tensors`` (CPU)."""

    path: Path
    metadata: AdapterMetadata
    tensors: Dict[str, torch.Tensor]


def save_adapter(path, model: nn.Module, scanner: Optional[dict] = None, training: Optional[dict] = None,
                 overwrite: bool = False) -> AdapterMetadata:
    """Save the PEFT tensors of ``model`` with their metadata to ``path`` (safetensors)."""
    record = applied_peft(model)
    if record is None:
        raise PetiteError(f"{path}: the model carries no PEFT spec to save")
    tensors = peft_state_dict(model)
    metadata = AdapterMetadata(model.backbone_name, model.preset, base_weights_sha256(model),
                               record.spec.canonical, dict(scanner or {}), dict(training or {}))
    to_json(metadata.scanner, f"{path}: scanner description")
    to_json(metadata.training, f"{path}: training summary")
    document = {"format": ADAPTER_FORMAT, **asdict(metadata)}
    write_tensors(path, tensors, document, overwrite=overwrite)
    return metadata


def read_adapter(path) -> AdapterFile:
    """Read adapter file ``path`` (format and version checked; nothing applied)."""
    path = Path(path)
    document, tensors = read_file(path, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION)
    check_fields(path, document, ADAPTER_FIELDS)
    try:
        metadata = AdapterMetadata(**{k: v for k, v in document.items() if k not in ("format", TENSORS_SHA256_KEY)})
    except TypeError:
        raise PetiteError(f"{path}: adapter metadata is incomplete or has unknown fields") from None
    return AdapterFile(path, _gated_vpt_as_gvpt(metadata, tensors), tensors)


def _gated_vpt_as_gvpt(metadata: AdapterMetadata, tensors: Dict[str, torch.Tensor]) -> AdapterMetadata:
    """``metadata`` with ``gvpt`` for ``vpt`` when the file holds gated prompts under a spec
    without ``gvpt`` (a file from before ``vpt`` became the joint form); else unchanged. A spec
    that does not parse is left for :func:`check_adapter_fits` to report."""
    if not any(name.endswith(PROMPT_GATE_SUFFIX) for name in tensors):
        return metadata
    try:
        spec = parse_spec(metadata.spec, metadata.backbone)
    except PetiteError:
        return metadata
    if "vpt" not in spec.methods or "gvpt" in spec.methods:
        return metadata
    terms = tuple(replace(term, method="gvpt") if term.method == "vpt" else term for term in spec.terms)
    return replace(metadata, spec=PeftSpec(spec.backbone, terms).canonical)


def check_adapter_fits(adapter: AdapterFile, model: nn.Module, base_sha256: Optional[str] = None) -> None:
    """Raise :class:`PetiteError` naming the file unless the adapter was trained for this
    backbone, preset and base weights (``base_sha256`` of the model, computed if not given)
    and its spec is valid for the backbone."""
    meta, path = adapter.metadata, adapter.path
    if meta.backbone != model.backbone_name or meta.preset != model.preset:
        raise PetiteError(f"{path}: adapter is for {meta.backbone}/{meta.preset}, "
                          f"the model is {model.backbone_name}/{model.preset}")
    actual = base_sha256 or base_weights_sha256(model)
    if meta.base_sha256 != actual:
        raise PetiteError(f"{path}: adapter was trained on base weights {meta.base_sha256[:12]}, "
                          f"the model's are {actual[:12]}")
    try:
        parse_spec(meta.spec, meta.backbone)
    except PetiteError as exc:
        raise PetiteError(f"{path}: {exc}") from None


def activate_adapter(model: nn.Module, adapter: AdapterFile) -> None:
    """Replace any PEFT spec on ``model`` by the adapter's spec and tensors (no checks of the
    base; see :func:`check_adapter_fits`). Raises :class:`PetiteError` if the tensors do not
    match the spec in name, shape or dtype, leaving the model plain."""
    remove_peft(model)
    apply_peft(model, adapter.metadata.spec)
    expected = trainable_parameters(model)
    problem = next((f"missing {n}" for n in expected if n not in adapter.tensors), None) \
        or next((f"unexpected {n}" for n in adapter.tensors if n not in expected), None) \
        or next((f"{n} has shape {tuple(adapter.tensors[n].shape)}, expected {tuple(p.shape)}"
                 for n, p in expected.items() if adapter.tensors[n].shape != p.shape), None)
    if problem:
        remove_peft(model)
        raise PetiteError(f"{adapter.path}: tensors do not match spec '{adapter.metadata.spec}' ({problem})")
    for name, parameter in expected.items():
        try:
            check_dtype(adapter.path, name, adapter.tensors[name], parameter.dtype)
        except PetiteError:
            remove_peft(model)
            raise
    with torch.no_grad():
        for name, parameter in expected.items():
            parameter.copy_(adapter.tensors[name])


def load_adapter(model: nn.Module, path, expected_spec=None) -> AdapterMetadata:
    """Load adapter file ``path`` onto backbone ``model`` (replacing any PEFT spec on it).

    Checks backbone, preset, base-weight SHA-256 and spec (and, if ``expected_spec`` is given,
    that the file's spec is that one) and refuses a mismatch with a one-line
    :class:`PetiteError` naming the file. Returns the file's metadata.
    """
    adapter = read_adapter(path)
    check_adapter_fits(adapter, model)
    if expected_spec is not None:
        wanted = parse_spec(expected_spec, model.backbone_name, model.preset).canonical
        if wanted != adapter.metadata.spec:
            raise PetiteError(f"{adapter.path}: adapter spec is '{adapter.metadata.spec}', expected '{wanted}'")
    activate_adapter(model, adapter)
    return adapter.metadata
