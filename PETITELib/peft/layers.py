"""PEFT layers: a base layer with method layers attached, and the lean forward of frozen layers.

No method hooks into a layer. Attaching one turns the layer, in place, into an instance of a
*tuned* subclass of its own type (``TunedConv3d`` for an ``nn.Conv3d``; the way
``torch.nn.utils.parametrize`` specialises a module), whose forward runs the base computation
once and composes the attached method layers with it. Method layers are children of the layer
under their slot name (``qkv.lora``, ``norm1.ssf``), so parameter names stay the base model's
plus the method tensors (``qkv.lora.up``): base and adapter files keep their names, and the
layer keeps its attributes and ``isinstance``. When its last method goes, :func:`restore_plain`
turns it back into its own type.

One tuned class per layer type:

- :class:`TunedConv` (Conv3d, ConvTranspose3d): a frozen weight runs through
  :class:`~PETITELib.peft.frozen.FrozenConvolution` (no copy of the input kept), then the
  output methods (LoRA adds its low-rank path, SSF scales and shifts);
- :class:`TunedNorm` (LayerNorm, InstanceNorm, BatchNorm): *affine* methods (SSF) compose into
  the norm's weight and bias and the input is normalised once; an eval-mode BatchNorm with a
  frozen weight runs through :class:`~PETITELib.peft.frozen.FrozenBatchNorm`;
- :class:`TunedLeakyReLU`: keeps a bool mask (:class:`~PETITELib.peft.frozen.MaskedLeakyReLU`);
- :class:`TunedLayer` (anything else: Linear, whole blocks such as an MLP): the base forward,
  then the output methods (a frozen Linear already keeps no input).

Method layers come in two kinds: :class:`OutputMethod` (``forward(layer, x, y) -> y'`` on the
layer's input ``x`` and base output ``y``) and :class:`AffineMethod`
(``compose(layer, weight, bias) -> (weight, bias)`` of a norm). Mergeable ones implement
``merge(layer)`` (fold into the layer's weights; output unchanged) and ``unmerge(layer)`` (its
inverse); both run under ``torch.no_grad``.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .frozen import frozen_batch_norm, frozen_convolution, masked_leaky_relu

CONV_TYPES = (nn.Conv3d, nn.ConvTranspose3d)
NORM_TYPES = (nn.LayerNorm, nn.modules.instancenorm._InstanceNorm, nn.modules.batchnorm._BatchNorm)
LEAN_TYPES = CONV_TYPES + (nn.modules.batchnorm._BatchNorm, nn.LeakyReLU)  # what freezing makes leaner


class OutputMethod(nn.Module):
    """A method layer acting on a layer's output: ``forward(layer, x, y) -> y'``."""

    kind = "output"
    mergeable = False


class AffineMethod(nn.Module):
    """A method layer folded into a norm's affine parameters: ``compose(layer, weight, bias)``
    with weight, bias of shape (C,) or None -> (weight, bias)."""

    kind = "affine"
    mergeable = False

    def compose(self, layer: nn.Module, weight: Optional[torch.Tensor],
                bias: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class TunedLayer(nn.Module):
    """Mixin of every tuned layer (first base of ``Tuned<Type>``; never built directly).

    ``base_class``: the layer's own type; ``peft_slots``: names of the attached method layers,
    in the order they apply.
    """

    base_class: type = nn.Module
    peft_slots: List[str]

    def method_layers(self, kind: str) -> List[nn.Module]:
        """The attached method layers of ``kind`` ("output" or "affine"), in order."""
        return [self._modules[slot] for slot in self.peft_slots if self._modules[slot].kind == kind]

    def base_output(self, x: torch.Tensor, *rest) -> torch.Tensor:
        """The base layer's output (lean where its weights are frozen)."""
        return self.base_class.forward(self, x, *rest)

    def forward(self, x: torch.Tensor, *rest) -> torch.Tensor:
        """The base output of ``x`` with every output method applied in turn."""
        y = self.base_output(x, *rest)
        for method in self.method_layers("output"):
            y = method(self, x, y)
        return y


class TunedConv(TunedLayer):
    """Conv3d / ConvTranspose3d: (B, Cin, D, H, W) -> (B, Cout, D', H', W').

    Leading output methods that compose into the weight (``composes_into_weight``: LoRA) run as
    one convolution with the weight plus their ``delta()``; the others act on its output."""

    def forward(self, x: torch.Tensor, *rest) -> torch.Tensor:
        methods = self.method_layers("output")
        composable = not rest and self.padding_mode == "zeros"  # what :func:`convolve` implements
        composed = 0
        while composable and composed < len(methods) and getattr(methods[composed], "composes_into_weight", False):
            composed += 1
        if composed:
            weight = self.weight
            for method in methods[:composed]:
                weight = weight + method.delta()
            y = convolve(self, x, weight)
        else:
            y = self.base_output(x, *rest)
        for method in methods[composed:]:
            y = method(self, x, y)
        return y

    def base_output(self, x: torch.Tensor, *rest) -> torch.Tensor:
        lean = (torch.is_grad_enabled() and not self.weight.requires_grad and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and not rest)
        return frozen_convolution(self, x) if lean else self.base_class.forward(self, x, *rest)


def convolve(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``conv`` (Conv3d or ConvTranspose3d, zero padding) applied to (B, Cin, D, H, W) ``x`` with
    ``weight`` in place of its own (its bias kept)."""
    if isinstance(conv, nn.ConvTranspose3d):
        return F.conv_transpose3d(x, weight, conv.bias, conv.stride, conv.padding, conv.output_padding,
                                  conv.groups, conv.dilation)
    return F.conv3d(x, weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class TunedNorm(TunedLayer):
    """LayerNorm (B, N, C), InstanceNorm / BatchNorm (B, C, ...): one normalisation with the
    affine parameters composed from the attached affine methods."""

    def base_output(self, x: torch.Tensor, *rest) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        for method in self.method_layers("affine"):
            weight, bias = method.compose(self, weight, bias)
        return normalise(self, x, weight, bias)


class TunedLeakyReLU(TunedLayer):
    """LeakyReLU that keeps a bool mask for the backward pass instead of a float tensor."""

    def base_output(self, x: torch.Tensor, *rest) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return masked_leaky_relu(x, self.negative_slope)
        return self.base_class.forward(self, x)


def normalise(norm: nn.Module, x: torch.Tensor, weight: Optional[torch.Tensor],
              bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``norm``'s normalisation of ``x`` with affine ``weight`` and ``bias`` (C,) in place of its own."""
    if isinstance(norm, nn.LayerNorm):
        return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps)
    if isinstance(norm, nn.modules.instancenorm._InstanceNorm):
        return F.instance_norm(x, norm.running_mean, norm.running_var, weight, bias,
                               norm.training or not norm.track_running_stats,
                               0.0 if norm.momentum is None else norm.momentum, norm.eps)
    return _batch_norm(norm, x, weight, bias)


def _batch_norm(norm: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, weight, bias) -> torch.Tensor:
    """A BatchNorm layer's forward with the given affine parameters (train or eval mode)."""
    batch_statistics = norm.training or (norm.running_mean is None and norm.running_var is None)
    if not batch_statistics:
        if torch.is_grad_enabled() and (weight is None or not weight.requires_grad):
            return frozen_batch_norm(x, norm.running_mean, norm.running_var, weight, bias, norm.eps)
        return F.batch_norm(x, norm.running_mean, norm.running_var, weight, bias, False, 0.0, norm.eps)
    momentum = 0.0 if norm.momentum is None else norm.momentum
    if norm.training and norm.track_running_stats and norm.num_batches_tracked is not None:
        norm.num_batches_tracked.add_(1)
        if norm.momentum is None:  # cumulative moving average
            momentum = 1.0 / float(norm.num_batches_tracked)
    keeps_statistics = not norm.training or norm.track_running_stats
    return F.batch_norm(x, norm.running_mean if keeps_statistics else None,
                        norm.running_var if keeps_statistics else None, weight, bias, True, momentum, norm.eps)


_TUNED_CLASSES: Dict[type, type] = {}


def _tuned_class(base_class: type) -> type:
    """``Tuned<Type>``: the tuned subclass of ``base_class`` (made once per type)."""
    if base_class not in _TUNED_CLASSES:
        if issubclass(base_class, CONV_TYPES):
            mixin = TunedConv
        elif issubclass(base_class, NORM_TYPES):
            mixin = TunedNorm
        elif issubclass(base_class, nn.LeakyReLU):
            mixin = TunedLeakyReLU
        else:
            mixin = TunedLayer
        _TUNED_CLASSES[base_class] = type(f"Tuned{base_class.__name__}", (mixin, base_class),
                                          {"base_class": base_class, "__module__": __name__})
    return _TUNED_CLASSES[base_class]


def tune(layer: nn.Module) -> TunedLayer:
    """Turn ``layer`` (in place) into its tuned type, without methods; returns it."""
    if not isinstance(layer, TunedLayer):
        layer.__class__ = _tuned_class(type(layer))
        layer.peft_slots = []
    return layer


def attach_method(layer: nn.Module, slot: str, method: nn.Module, index: Optional[int] = None) -> None:
    """Attach ``method`` to ``layer`` as child ``slot`` (at position ``index`` of its methods,
    default last); the layer becomes tuned if it is not yet."""
    if isinstance(layer, NORM_TYPES) != (method.kind == "affine"):
        raise ValueError(f"a {type(method).__name__} cannot act on a {type(layer).__name__}")
    tuned = tune(layer)
    if slot in tuned.peft_slots:
        raise ValueError(f"{type(layer).__name__} already has a method in slot '{slot}'")
    tuned.add_module(slot, method)
    tuned.peft_slots.insert(len(tuned.peft_slots) if index is None else index, slot)


def detach_method(layer: TunedLayer, slot: str) -> int:
    """Remove the method in ``slot`` from ``layer``; returns the position it had."""
    index = layer.peft_slots.index(slot)
    layer.peft_slots.remove(slot)
    delattr(layer, slot)
    return index


def make_frozen_layers_lean(model: nn.Module) -> int:
    """Tune every convolution, BatchNorm and LeakyReLU of ``model`` so that, while frozen, it
    keeps only what the backward pass needs (outputs are unchanged). Returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, LEAN_TYPES) and not isinstance(module, TunedLayer):
            tune(module)
            count += 1
    return count


def restore_plain(model: nn.Module) -> None:
    """Turn every tuned layer of ``model`` back into its own type (its methods must be detached)."""
    for module in model.modules():
        if isinstance(module, TunedLayer):
            if module.peft_slots:
                raise ValueError(f"{type(module).__name__} still carries {module.peft_slots}")
            module.__class__ = module.base_class
            del module.peft_slots
