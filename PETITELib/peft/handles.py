"""How a PEFT method changes a model, and how it is merged, unmerged or undone.

Additive methods *attach* a method layer to the layer they adapt (see :mod:`.layers`): it
becomes a child under its slot name (e.g. ``vit.blocks.0.attn.qkv.lora``) and the layer's
forward composes it. Base parameters keep their names, so a base-model file loads into a model
with or without adapters, and adapter files name only the new tensors.
Selective methods train base tensors in place; their original values are kept so that the
base can be restored exactly (switching adapters) and hashed (adapter/base matching).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set

import torch
from torch import nn

from .layers import attach_method, detach_method


@dataclass
class Attachment:
    """Method layer ``layer`` attached to ``target`` (module ``target_name``) as child ``slot``.

    ``merged``: folded into the target's weights and detached; ``position``: where it sat among
    the target's methods when it was detached (merges and unmerges run in opposite orders, so
    putting it back there restores the order of application).
    """

    target_name: str
    target: nn.Module
    slot: str
    layer: nn.Module
    attached: bool = True
    merged: bool = False
    position: Optional[int] = None

    def detach(self) -> None:
        """Take the method layer off the target (no-op when already detached)."""
        if self.attached:
            self.position = detach_method(self.target, self.slot)
            self.attached = False

    def reattach(self) -> None:
        """Put the method layer back where it was."""
        if not self.attached:
            attach_method(self.target, self.slot, self.layer, self.position)
            self.attached = True


@dataclass
class MethodHandle:
    """What applying one method to one part did.

    trainable: name -> parameter trained by this method; added: names of tensors that are not
    part of the base model; base_originals: name -> value before this method changed a base
    tensor in place (None: the tensor did not exist in the base, e.g. a bias created by a merge).
    """

    method: str
    part: str
    trainable: Dict[str, nn.Parameter] = field(default_factory=dict)
    added: Set[str] = field(default_factory=set)
    base_originals: Dict[str, Optional[torch.Tensor]] = field(default_factory=dict)
    attachments: List[Attachment] = field(default_factory=list)
    undo: List[Callable[[], None]] = field(default_factory=list)
    merged_trainable: Dict[str, nn.Parameter] = field(default_factory=dict)

    def attach(self, model: nn.Module, target_name: str, slot: str, layer: nn.Module) -> None:
        """Attach method ``layer`` to module ``target_name`` under ``slot`` (see :mod:`.layers`)."""
        target = model.get_submodule(target_name)
        reference = next(model.parameters())
        layer = layer.to(device=reference.device, dtype=reference.dtype)
        attach_method(target, slot, layer)
        self.attachments.append(Attachment(target_name, target, slot, layer))
        for name, parameter in layer.named_parameters():
            self.add_new(f"{target_name}.{slot}.{name}", parameter)

    def add_new(self, name: str, parameter: nn.Parameter) -> None:
        """Record a new (non-base) trainable parameter."""
        self.trainable[name] = parameter
        self.added.add(name)

    def train_in_place(self, name: str, parameter: nn.Parameter) -> None:
        """Make base parameter ``name`` trainable, remembering its value for :meth:`remove`."""
        original = parameter.detach().clone()
        self.base_originals.setdefault(name, original)
        self.trainable[name] = parameter
        parameter.requires_grad_(True)

        def restore() -> None:
            with torch.no_grad():
                parameter.copy_(original)
            parameter.requires_grad_(False)

        self.undo.append(restore)

    def snapshot_weights(self, name: str, module: nn.Module) -> None:
        """Remember ``module.weight``/``bias`` (and ``affine``) before a merge rewrites them, so
        that :meth:`remove` restores the exact base (an unmerge is exact only to rounding)."""
        saved = {attr: None if getattr(module, attr) is None else getattr(module, attr).detach().clone()
                 for attr in ("weight", "bias")}
        affine = getattr(module, "affine", None)
        for attr, value in saved.items():
            self.base_originals.setdefault(f"{name}.{attr}", value)

        def restore() -> None:
            for attr, value in saved.items():
                if value is None:
                    setattr(module, attr, None)
                else:
                    with torch.no_grad():
                        getattr(module, attr).copy_(value)
            if affine is not None:
                module.affine = affine

        self.undo.append(restore)

    def merge(self) -> None:
        """Fold each attached method layer into its target's weights and detach it (output
        unchanged); its tensors stop training until :meth:`unmerge`."""
        for attachment in self.attachments:
            if attachment.attached:
                if not attachment.merged and f"{attachment.target_name}.weight" not in self.base_originals:
                    self.snapshot_weights(attachment.target_name, attachment.target)
                with torch.no_grad():
                    attachment.layer.merge(attachment.target)
                attachment.detach()
                attachment.merged = True
        self.merged_trainable.update(self.trainable)
        for parameter in self.trainable.values():
            parameter.requires_grad_(False)
        self.trainable.clear()

    def unmerge(self) -> None:
        """Undo :meth:`merge`: take each method layer's contribution back out of its target's
        weights (exact to rounding) and attach it again; its tensors train again."""
        for attachment in reversed(self.attachments):
            if attachment.merged:
                with torch.no_grad():
                    attachment.layer.unmerge(attachment.target)
                attachment.reattach()
                attachment.merged = False
        for parameter in self.merged_trainable.values():
            parameter.requires_grad_(True)
        self.trainable.update(self.merged_trainable)
        self.merged_trainable.clear()

    def remove(self) -> None:
        """Undo everything: detach method layers, restore base tensors and attributes."""
        for attachment in self.attachments:
            attachment.detach()
        for restore in reversed(self.undo):
            restore()
        self.attachments.clear()
        self.undo.clear()
        self.trainable.clear()
        self.merged_trainable.clear()
