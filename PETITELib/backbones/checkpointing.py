"""Activation checkpointing: recompute a module's activations in the backward pass instead of
storing them (less memory, about one more forward of that module in time)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def call(module: nn.Module, *args, checkpointing: bool = False):
    """``module(*args)``, checkpointed when ``checkpointing`` is set, the module is in train
    mode and autograd is recording. BatchNorm layers in train mode inside a checkpointed
    module update their running statistics twice per step (PEFT keeps them frozen)."""
    if checkpointing and module.training and torch.is_grad_enabled():
        return checkpoint(module, *args, use_reentrant=False)
    return module(*args)
