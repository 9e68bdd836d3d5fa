"""Memory-lean autograd functions for frozen layers: they keep only what the backward pass needs.

Autograd saves what an op's combined backward formula references, whatever is actually asked
of it: a convolution keeps its input for a weight gradient that a frozen weight never needs, an
eval-mode BatchNorm keeps its input although its input gradient is a per-channel scaling, and a
LeakyReLU keeps a float copy of its input where the sign is enough. These functions compute the
same forward values as the plain ops (the same kernels) and keep:

- :class:`FrozenConvolution` (Conv3d / ConvTranspose3d, frozen weight): the weight only; input
  gradient by the adjoint convolution, bias gradient (BitFit) by summing the output gradient;
- :class:`FrozenBatchNorm` (eval mode, frozen weight): the per-channel scale (C,);
- :class:`MaskedLeakyReLU`: a bool mask (1 byte per element instead of 4).

No gradient is computed for an input that does not require one (``ctx.needs_input_grad``), so a
frozen first layer under a trainable bias costs one sum in the backward pass.
Tensors: convolution inputs (B, C, D, H, W); parameters as in the matching ``nn`` layers.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def _channel_sum(grad: torch.Tensor) -> torch.Tensor:
    """Sum of ``grad`` (B, C, ...) over every axis but the channel axis 1 -> (C,), accumulated in
    at least float32."""
    return grad.sum(dim=[d for d in range(grad.dim()) if d != 1],
                    dtype=torch.promote_types(grad.dtype, torch.float32))


class FrozenConvolution(torch.autograd.Function):
    """``conv3d`` / ``conv_transpose3d`` whose weight gets no gradient; saves no activation.

    apply(x, weight, bias, stride, padding, dilation, groups, transposed, output_padding):
    x (B, Cin, D, H, W) -> (B, Cout, D', H', W'); ``weight`` must not require grad;
    ``bias`` (Cout,) or None may (BitFit).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups, transposed, output_padding):
        if weight.requires_grad:
            raise ValueError("FrozenConvolution needs a frozen weight")
        ctx.save_for_backward(weight)
        ctx.geometry = (stride, padding, dilation, groups, transposed, output_padding)
        ctx.input_shape = x.shape
        if transposed:
            return F.conv_transpose3d(x, weight, bias, stride, padding, output_padding, groups, dilation)
        return F.conv3d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        stride, padding, dilation, groups, transposed, output_padding = ctx.geometry
        grad_input = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad = grad.contiguous()
            weight = weight.to(grad.dtype)  # under autocast the forward ran in lower precision
            if transposed:  # the adjoint of a transposed convolution is the convolution
                grad_input = F.conv3d(grad, weight, None, stride, padding, dilation, groups)
            else:
                grad_input = _convolution_adjoint(grad, weight, ctx.input_shape, stride, padding, dilation, groups)
        if ctx.needs_input_grad[2]:
            grad_bias = _channel_sum(grad)
        return grad_input, None, grad_bias, None, None, None, None, None, None


def _convolution_adjoint(grad: torch.Tensor, weight: torch.Tensor, input_shape: Sequence[int], stride, padding,
                         dilation, groups: int) -> torch.Tensor:
    """The input gradient of ``conv3d(x, weight)`` for output gradient ``grad`` (B, Cout, D', H', W').

    Stride 1: a convolution with the kernel flipped and its in/out channels swapped (per group),
    padded by dilation * (k - 1) - padding (on the CPU about twice as fast as the equivalent
    transposed convolution); otherwise the transposed convolution."""
    kernel = weight.shape[2:]
    adjoint_padding = [d * (k - 1) - p for k, p, d in zip(kernel, padding, dilation)]
    if all(s == 1 for s in stride) and min(adjoint_padding) >= 0:
        out_channels, in_per_group = weight.shape[:2]
        flipped = (weight.reshape(groups, out_channels // groups, in_per_group, *kernel).transpose(1, 2)
                   .reshape(groups * in_per_group, out_channels // groups, *kernel).flip((2, 3, 4)))
        return F.conv3d(grad, flipped, None, 1, adjoint_padding, dilation, groups)
    output_padding = _adjoint_output_padding(input_shape, grad.shape, weight, stride, padding, dilation)
    return F.conv_transpose3d(grad, weight, None, stride, padding, output_padding, groups, dilation)


def _adjoint_output_padding(input_shape: Sequence[int], output_shape: Sequence[int], weight: torch.Tensor,
                            stride, padding, dilation) -> tuple:
    """Output padding that brings the transposed convolution of a (B, Cout, D', H', W') gradient
    back to the forward input's spatial size (lost to the stride's rounding)."""
    return tuple(size - ((out - 1) * s - 2 * p + d * (k - 1) + 1)
                 for size, out, k, s, p, d in zip(input_shape[2:], output_shape[2:], weight.shape[2:],
                                                  stride, padding, dilation))


def frozen_convolution(conv: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``conv`` (an ``nn.Conv3d`` or ``nn.ConvTranspose3d`` with zero padding) on
    (B, Cin, D, H, W) ``x`` through :class:`FrozenConvolution`."""
    transposed = isinstance(conv, torch.nn.ConvTranspose3d)
    output_padding = conv.output_padding if transposed else (0, 0, 0)
    return FrozenConvolution.apply(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation,
                                   conv.groups, transposed, output_padding)


class FrozenBatchNorm(torch.autograd.Function):
    """Eval-mode ``batch_norm`` (running statistics) with a frozen weight; saves only the
    per-channel scale weight / sqrt(running_var + eps).

    apply(x, running_mean, running_var, weight, bias, eps): x (B, C, ...) -> same shape;
    ``weight`` (C,) or None must not require grad, ``bias`` (C,) or None may.
    """

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, eps):
        if weight is not None and weight.requires_grad:
            raise ValueError("FrozenBatchNorm needs a frozen weight")
        scale = torch.rsqrt(running_var + eps)
        if weight is not None:
            scale = scale * weight
        ctx.save_for_backward(scale)
        return F.batch_norm(x, running_mean, running_var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        grad_input = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = grad * scale.view(1, -1, *[1] * (grad.dim() - 2))
        if ctx.needs_input_grad[4]:
            grad_bias = _channel_sum(grad)
        return grad_input, None, None, None, grad_bias, None


def frozen_batch_norm(x: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor,
                      weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float) -> torch.Tensor:
    """Eval-mode batch normalisation of (B, C, ...) ``x`` through :class:`FrozenBatchNorm`."""
    return FrozenBatchNorm.apply(x, running_mean, running_var, weight, bias, eps)


class MaskedLeakyReLU(torch.autograd.Function):
    """``leaky_relu`` that saves the sign of its input as a bool mask (1 byte per element).

    apply(x, negative_slope): any shape -> same shape.
    """

    @staticmethod
    def forward(ctx, x, negative_slope):
        ctx.save_for_backward(x > 0)
        ctx.negative_slope = negative_slope
        return F.leaky_relu(x, negative_slope)

    @staticmethod
    def backward(ctx, grad):
        (positive,) = ctx.saved_tensors
        # leaky_relu's own backward on the mask as 1.0 / 0.0 (its test is input > 0): the same
        # result as on the input, and faster on the CPU than a select on a bool tensor
        return torch.ops.aten.leaky_relu_backward(grad, positive.to(grad.dtype), ctx.negative_slope, False), None


def masked_leaky_relu(x: torch.Tensor, negative_slope: float) -> torch.Tensor:
    """LeakyReLU of ``x`` through :class:`MaskedLeakyReLU`."""
    return MaskedLeakyReLU.apply(x, negative_slope)
