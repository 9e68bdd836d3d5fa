"""Applying a PEFT spec to a backbone, and everything asked of the result: trainable tensors,
parameter counts, merging and unmerging, removal, and the untouched base weights with their
SHA-256.

The record of what was applied lives on the model as ``model.petite_peft`` (an
:class:`AppliedPeft`, or None).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import nn

from ..backbones.base import BackboneMixin
from ..errors import PetiteError
from .handles import MethodHandle
from .layers import make_frozen_layers_lean, restore_plain
from .registry import METHODS
from .spec import PeftSpec, parse_spec


@dataclass
class AppliedPeft:
    """What :func:`apply_peft` did to a model: the spec, one handle per term (application
    order), the parameters' ``requires_grad`` flags before, and whether layers were merged."""

    spec: PeftSpec
    handles: List[MethodHandle]
    requires_grad_before: Dict[str, bool]
    merged: bool = False
    base_sha256: Optional[str] = field(default=None, repr=False)


@dataclass(frozen=True)
class ParameterCount:
    """trainable: parameters that will be updated; total: parameters of the base model
    (PEFT layers excluded); percent = 100 * trainable / total."""

    trainable: int
    total: int

    @property
    def percent(self) -> float:
        """Trainable parameters as a percentage of the base model's."""
        return 100.0 * self.trainable / self.total


def _check_backbone(model: nn.Module) -> None:
    if not isinstance(model, BackboneMixin):
        raise TypeError(f"expected a PETITE backbone, got {type(model).__name__}")


def applied_peft(model: nn.Module) -> Optional[AppliedPeft]:
    """The :class:`AppliedPeft` record of ``model``, or None for a plain base model."""
    return getattr(model, "petite_peft", None)


def apply_peft(model: nn.Module, spec) -> PeftSpec:
    """Apply ``spec`` (text or :class:`PeftSpec`) to backbone ``model`` in place.

    Freezes every base parameter, makes the frozen layers memory-lean (they keep only what
    the backward pass needs, see :mod:`.frozen`), adds the methods' layers (identity at first
    for every additive method but ``vpt``, see ``PeftMethod.identity_at_init``), makes exactly
    the methods' tensors trainable, and keeps BatchNorm layers on their running statistics.
    ``full`` makes every parameter trainable instead.
    Returns the parsed spec. Raises :class:`PetiteError` for a bad spec or when the model
    already carries one (call :func:`remove_peft` first).
    """
    _check_backbone(model)
    current = applied_peft(model)
    if current is not None:
        raise PetiteError(f"model already carries PEFT spec '{current.spec}'; remove it first")
    parsed = parse_spec(spec, model.backbone_name, model.preset)
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    handles: List[MethodHandle] = []
    if parsed.full:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
    else:
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        parts = model.peft_parts()
        make_frozen_layers_lean(model)
        try:
            for term in parsed.terms:
                handles.append(METHODS[term.method].inject(model, term.part, parts[term.part], term.config))
                if not handles[-1].trainable:
                    raise PetiteError(f"{term.method} finds nothing to train in "
                                      f"{model.backbone_name}'s {term.part}")
        except BaseException:
            for handle in reversed(handles):
                handle.remove()
            restore_plain(model)
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(before[name])
            raise
        model.freeze_batchnorm_statistics = True
        model.train(model.training)
    model.petite_peft = AppliedPeft(parsed, handles, before)
    return parsed


def remove_peft(model: nn.Module) -> None:
    """Undo :func:`apply_peft` (and any merge): detach PEFT layers, restore base tensors
    trained in place or merged into, and restore ``requires_grad`` flags. A model fine-tuned
    with ``full`` keeps its new weights. No-op for a plain model."""
    record = applied_peft(model)
    if record is None:
        return
    for handle in reversed(record.handles):
        handle.remove()
    restore_plain(model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(record.requires_grad_before.get(name, False))
        parameter.grad = None
    model.freeze_batchnorm_statistics = False
    model.train(model.training)
    model.petite_peft = None


def merge_peft(model: nn.Module) -> List[str]:
    """Fold LoRA and SSF layers into the base weights (same output, layers gone, their
    tensors no longer trained) for zero-cost inference.

    Other methods stay as they are (BitFit/LayerNorm already live in base tensors; adapters
    and prompts cannot be folded). :func:`unmerge_peft` takes the layers out of the weights
    again; :func:`remove_peft` restores the original base exactly either way.
    Returns the names of the merged methods (each once).
    """
    record = applied_peft(model)
    if record is None:
        return []
    merged = []
    for handle in record.handles:
        if METHODS[handle.method].mergeable and any(a.attached for a in handle.attachments):
            handle.merge()
            merged.append(handle.method)
    record.merged = record.merged or bool(merged)
    return list(dict.fromkeys(merged))


def unmerge_peft(model: nn.Module) -> List[str]:
    """Undo :func:`merge_peft`: subtract the merged LoRA and SSF contributions from the base
    weights (exact to float rounding, about 1e-7 relative) and put their layers back, trainable
    again. Returns the names of the unmerged methods (each once)."""
    record = applied_peft(model)
    if record is None or not record.merged:
        return []
    unmerged = []
    for handle in reversed(record.handles):
        if any(a.merged for a in handle.attachments):
            handle.unmerge()
            unmerged.append(handle.method)
    record.merged = False
    return list(dict.fromkeys(reversed(unmerged)))


def trainable_parameters(model: nn.Module) -> Dict[str, nn.Parameter]:
    """name -> parameter for every parameter that requires grad (give these to the optimizer)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _added_names(model: nn.Module) -> set:
    record = applied_peft(model)
    return set().union(*(h.added for h in record.handles)) if record else set()


def count_parameters(model: nn.Module) -> ParameterCount:
    """Trainable parameters and base-model parameters (PEFT layers excluded) of ``model``."""
    added = _added_names(model)
    total = sum(p.numel() for name, p in model.named_parameters() if name not in added)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ParameterCount(trainable, total)


def peft_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The tensors a PEFT run trains (what an adapter file stores), detached, on the CPU."""
    record = applied_peft(model)
    if record is None or record.spec.full:
        raise PetiteError("model carries no PEFT layers (plain base or full fine-tuning)")
    if record.merged:
        raise PetiteError(f"PEFT spec '{record.spec}' was merged into the base; its tensors are gone")
    tensors = {}
    for handle in record.handles:
        tensors.update({name: p.detach().cpu().contiguous() for name, p in handle.trainable.items()})
    return tensors


def base_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The base model's tensors (parameters and buffers): the model's state without PEFT
    layers, with base tensors trained in place or merged into restored to their base values."""
    record = applied_peft(model)
    state = {name: t for name, t in model.state_dict().items() if name not in _added_names(model)}
    if record is not None:
        restored = set()
        for handle in record.handles:  # the first handle that changed a tensor saw the base value
            for name, original in handle.base_originals.items():
                if name in restored:
                    continue
                restored.add(name)
                if original is None:
                    state.pop(name, None)
                else:
                    state[name] = original
    return state


def tensors_sha256(tensors: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over tensors in name order: each name, dtype, shape and raw little-endian bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def base_weights_sha256(model: nn.Module) -> str:
    """SHA-256 of the base weights of ``model`` (see :func:`tensors_sha256`); independent of
    any PEFT layers applied, and cached while a spec is applied (the base is frozen then)."""
    record = applied_peft(model)
    if record is not None and not record.spec.full:
        if record.base_sha256 is None:
            record.base_sha256 = tensors_sha256(base_state_dict(model))
        return record.base_sha256
    return tensors_sha256(base_state_dict(model))
