"""Starting pre-training from the identity: a residual network whose last layer is zero outputs its input.

A residual backbone computes ``long = short + branch(short)``. With default (random)
initialisation the branch adds structured noise, so a briefly trained model is worse than
its own input; with the branch's last convolution set to zero the model starts exactly at
the short scan and every step that lowers the loss improves on it (zero-initialised output
layers, as in Fixup or ControlNet). Gradients still reach every layer after the first step.
"""
from __future__ import annotations

import torch
from torch import nn

from ..backbones.base import ROI_SIZE

_CONVS = (nn.Conv3d, nn.ConvTranspose3d)


def last_convolution(model: nn.Module) -> nn.Module:
    """The convolution that runs last in ``model``'s forward pass (found by tracing one batch)."""
    order = []
    hooks = [m.register_forward_hook(lambda module, args, output: order.append(module))
             for m in model.modules() if isinstance(m, _CONVS)]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            reference = next(model.parameters())
            model(torch.zeros(1, 1, ROI_SIZE, ROI_SIZE, ROI_SIZE, device=reference.device, dtype=reference.dtype))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise ValueError(f"{type(model).__name__} runs no convolution")
    return order[-1]


def start_from_identity(model: nn.Module) -> None:
    """Zero the last convolution of a residual backbone so that ``model(x) == x`` at the start.

    Raises ValueError when the model is not residual or the zeroed layer does not make it the
    identity (e.g. the last convolution is not the end of the residual branch).
    """
    if not getattr(model, "residual", False):
        raise ValueError(f"{type(model).__name__} is not a residual backbone")
    layer = last_convolution(model)
    with torch.no_grad():
        layer.weight.zero_()
        if layer.bias is not None:
            layer.bias.zero_()
        was_training = model.training
        model.eval()
        reference = next(model.parameters())
        probe = torch.rand(1, 1, ROI_SIZE, ROI_SIZE, ROI_SIZE, generator=torch.Generator().manual_seed(0))
        probe = probe.to(device=reference.device, dtype=reference.dtype)
        identical = torch.equal(model(probe), probe)
        model.train(was_training)
    if not identical:
        raise ValueError(f"zeroing the last convolution of {type(model).__name__} does not give the identity")
