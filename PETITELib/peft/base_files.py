"""Base-model files: backbone weights (+ the CvT-GAN discriminator) in one safetensors file.

Layout: the generator's state dict under its own names; the discriminator's, if stored, under
the prefix ``discriminator.``. JSON metadata: ``format`` "petite-base-model",
``format_version`` (2), ``tensors_sha256`` (of every tensor in the file, discriminator
included; checked on every read), ``backbone``, ``preset``, ``options`` (builder options such
as ``residual``), ``base_sha256`` (of the generator tensors, see
:func:`~PETITELib.peft.model.tensors_sha256`), ``has_discriminator`` and a free-form
``training`` summary (``finetuned_from``: the base SHA-256 of a fully fine-tuned model). The
base SHA-256 identifies the weights, not the file bytes: re-saving the same weights with
another summary keeps it, and adapter files refer to it. Reading checks every field's type,
both SHA-256s and finiteness; loading also checks each tensor's name, shape and dtype.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import torch
from torch import nn

from ..backbones import BACKBONES, PRESETS, build_backbone, build_discriminator
from ..errors import PetiteError
from .model import applied_peft, base_state_dict, tensors_sha256
from .safetensors_io import SHA256, check_dtype, check_fields, read_file, read_metadata, write_tensors

BASE_FORMAT = "petite-base-model"
BASE_FORMAT_VERSION = 2  # 2: tensors_sha256 recorded and checked
BASE_FIELDS = {"backbone": str, "preset": str, "options": dict, "base_sha256": SHA256, "has_discriminator": bool,
               "training": dict}
DISCRIMINATOR_PREFIX = "discriminator."


@dataclass
class BaseModel:
    """A loaded base-model file: ``model`` (eval mode), ``discriminator`` (or None),
    ``sha256`` of the base weights, and the file's ``metadata`` dict."""

    model: nn.Module
    discriminator: Optional[nn.Module]
    sha256: str
    metadata: dict


def save_base_model(path, model: nn.Module, discriminator: Optional[nn.Module] = None,
                    training: Optional[dict] = None, overwrite: bool = False) -> str:
    """Save backbone ``model`` (and its ``discriminator``) with a ``training`` summary to ``path``.

    Refuses a model that carries PEFT layers (save those with ``save_adapter``); a model
    fine-tuned with ``full`` is saved as a new base. Returns the weights' SHA-256.
    """
    record = applied_peft(model)
    if record is not None and not record.spec.full:
        raise PetiteError(f"{path}: the model carries PEFT spec '{record.spec}'; save it as an adapter "
                          f"or remove it before saving a base model")
    generator = base_state_dict(model)
    sha256 = tensors_sha256(generator)
    tensors: Dict[str, torch.Tensor] = dict(generator)
    if discriminator is not None:
        tensors.update({DISCRIMINATOR_PREFIX + k: v for k, v in discriminator.state_dict().items()})
    metadata = {"format": BASE_FORMAT, "format_version": BASE_FORMAT_VERSION,
                "backbone": model.backbone_name, "preset": model.preset, "options": dict(model.options),
                "base_sha256": sha256, "has_discriminator": discriminator is not None,
                "training": training or {}}
    write_tensors(path, tensors, metadata, overwrite=overwrite)
    return sha256


def _load_state(path: Path, module: nn.Module, state: Dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        first = (missing and f"missing {missing[0]}") or (unexpected and f"unexpected {unexpected[0]}") \
            or f"shape of {wrong[0]} is {tuple(state[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}"
        raise PetiteError(f"{path}: {what} weights do not fit the model ({first}; "
                          f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} misshapen)")
    for name in sorted(expected):
        check_dtype(path, name, state[name], expected[name].dtype)
    module.load_state_dict(state)


def _split(tensors: Dict[str, torch.Tensor]):
    generator = {k: v for k, v in tensors.items() if not k.startswith(DISCRIMINATOR_PREFIX)}
    discriminator = {k[len(DISCRIMINATOR_PREFIX):]: v for k, v in tensors.items()
                     if k.startswith(DISCRIMINATOR_PREFIX)}
    return generator, discriminator


def read_base_metadata(path) -> dict:
    """The metadata of base-model file ``path``, with every field checked by type (the tensors are
    not read: :func:`load_base_model` and :func:`base_model_sha256` check them)."""
    metadata = read_metadata(path, BASE_FORMAT, BASE_FORMAT_VERSION)
    check_fields(path, metadata, BASE_FIELDS)
    if "finetuned_from" in metadata["training"]:
        check_fields(path, metadata["training"], {"finetuned_from": SHA256})
    return metadata


def _read_checked(path) -> tuple:
    path = Path(path)
    read_base_metadata(path)
    metadata, tensors = read_file(path, BASE_FORMAT, BASE_FORMAT_VERSION)
    backbone, preset = metadata.get("backbone"), metadata.get("preset")
    if backbone not in BACKBONES or preset not in PRESETS:
        raise PetiteError(f"{path}: unknown backbone/preset '{backbone}/{preset}'")
    generator, discriminator = _split(tensors)
    sha256 = tensors_sha256(generator)
    if sha256 != metadata.get("base_sha256"):
        raise PetiteError(f"{path}: weights do not match their recorded SHA-256 (damaged file?)")
    return path, metadata, generator, discriminator, sha256


def load_base_model(path, gradient_checkpointing: bool = False, device="cpu") -> BaseModel:
    """Load a base-model file: rebuild the backbone from its metadata, load and verify weights.

    Raises :class:`PetiteError` naming ``path`` for a missing/damaged file, another file
    format, a newer format version, or weights that do not fit or do not match their SHA-256.
    """
    path, metadata, generator, discriminator_state, sha256 = _read_checked(path)
    options = metadata.get("options", {})
    model = build_backbone(metadata["backbone"], metadata["preset"], residual=bool(options.get("residual", True)),
                           gradient_checkpointing=gradient_checkpointing)
    _load_state(path, model, generator, "backbone")
    discriminator = None
    if metadata.get("has_discriminator"):
        discriminator = build_discriminator(metadata["backbone"], metadata["preset"])
        _load_state(path, discriminator, discriminator_state, "discriminator")
        discriminator.to(device).eval()
    return BaseModel(model.to(device).eval(), discriminator, sha256, metadata)


def base_model_sha256(path) -> str:
    """The SHA-256 of the base weights in base-model file ``path`` (verified against its metadata)."""
    return _read_checked(path)[4]
