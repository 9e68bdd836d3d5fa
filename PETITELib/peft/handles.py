"""How a PEFT method changes a model, and how it is merged or undone.

Additive methods *attach* a small layer as a child of the layer they adapt (e.g.
``vit.blocks.0.attn.qkv.lora``) and register a forward hook that replaces the target's output
``y`` by ``layer(target, x, y)``. Base parameters keep their names, so a base-model file loads into a
model with or without adapters, and adapter files name only the new tensors.
Selective methods train base tensors in place; their original values are kept so that the
base can be restored exactly (switching adapters) and hashed (adapter/base matching).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle


@dataclass
class Attachment:
    """A layer attached to ``target`` as child ``slot``, applied by a forward hook."""

    target_name: str
    target: nn.Module
    slot: str
    layer: nn.Module
    hook: RemovableHandle
    attached: bool = True

    def detach(self) -> None:
        """Remove the hook and the child module (no-op when already detached)."""
        if self.attached:
            self.hook.remove()
            delattr(self.target, self.slot)
            self.attached = False


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

    def attach(self, model: nn.Module, target_name: str, slot: str, layer: nn.Module) -> None:
        """Attach ``layer`` to module ``target_name``: its output y becomes ``layer(target, x, y)``."""
        target = model.get_submodule(target_name)
        reference = next(model.parameters())
        target.add_module(slot, layer.to(device=reference.device, dtype=reference.dtype))
        hook = target.register_forward_hook(lambda module, args, output: layer(module, args[0], output))
        self.attachments.append(Attachment(target_name, target, slot, layer, hook))
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
        """Remember ``module.weight``/``bias`` (and ``affine``) before a merge rewrites them."""
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
        """Fold each attached layer into its target's weights and detach it (output unchanged)."""
        for attachment in self.attachments:
            if attachment.attached:
                self.snapshot_weights(attachment.target_name, attachment.target)
                with torch.no_grad():
                    attachment.layer.merge_into(attachment.target)
                attachment.detach()
        self.trainable.clear()

    def remove(self) -> None:
        """Undo everything: detach layers, restore base tensors and attributes."""
        for attachment in self.attachments:
            attachment.detach()
        for restore in reversed(self.undo):
            restore()
        self.attachments.clear()
        self.undo.clear()
        self.trainable.clear()
