"""The memory-lean functions for frozen layers (PETITELib.peft.frozen) against autograd's own
gradients in float64, what they keep for the backward pass, and the same check on whole
backbones with PEFT applied (every frozen conv, BatchNorm and LeakyReLU lean)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from PETITELib.backbones import BACKBONES, build_backbone
from PETITELib.peft import apply_peft, trainable_parameters
from PETITELib.peft import layers as peft_layers
from PETITELib.peft.frozen import FrozenConvolution, frozen_batch_norm, masked_leaky_relu

pytestmark = pytest.mark.usefixtures("one_intra_op_thread")
TOLERANCE = dict(rtol=1e-5, atol=1e-9)


def _saved_sizes(run):
    """Sizes of the tensors autograd saves while ``run()`` builds its graph."""
    sizes = []

    def pack(tensor):
        sizes.append(tuple(tensor.shape))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = run()
    return out, sizes


CONVS = [  # in, out, kernel, stride, padding, dilation, groups
    (3, 5, 3, 1, 1, 1, 1),
    (4, 4, 3, 2, 1, 1, 1),
    (6, 6, 3, 1, 1, 1, 6),   # depthwise (CvT q projection)
    (6, 6, 3, 2, 1, 1, 6),   # depthwise strided (CvT k/v projections)
    (2, 3, 1, 1, 0, 1, 1),   # 1x1x1 (UNETR residual)
    (3, 4, 4, 2, 1, 1, 1),   # k4 s2 (discriminator)
    (2, 3, 3, 1, 2, 2, 1),   # dilated
    (1, 3, 4, 4, 0, 1, 1),   # patch embedding-like
]


@pytest.mark.parametrize("in_c, out_c, k, stride, padding, dilation, groups", CONVS)
@pytest.mark.parametrize("bias_trains", [False, True])
def test_frozen_conv3d_matches_autograd_in_float64(in_c, out_c, k, stride, padding, dilation, groups, bias_trains):
    torch.manual_seed(0)
    x = torch.randn(2, in_c, 9, 8, 7, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(out_c, in_c // groups, k, k, k, dtype=torch.float64)
    bias = torch.randn(out_c, dtype=torch.float64, requires_grad=bias_trains)
    geometry = ((stride,) * 3, (padding,) * 3, (dilation,) * 3, groups)
    reference = F.conv3d(x, weight, bias, *geometry)
    out, saved = _saved_sizes(lambda: FrozenConvolution.apply(x, weight, bias, *geometry, False, (0, 0, 0)))
    assert torch.equal(out, reference)
    assert saved == [tuple(weight.shape)]  # no copy of the input
    grad = torch.randn_like(out)
    inputs = (x, bias) if bias_trains else (x,)
    for mine, theirs in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(reference, inputs, grad)):
        torch.testing.assert_close(mine, theirs, **TOLERANCE)


@pytest.mark.parametrize("in_c, out_c, k, stride, padding, output_padding", [
    (4, 3, 2, 2, 0, 0), (5, 2, 4, 2, 1, 0), (3, 3, 3, 2, 1, 1), (2, 4, 3, 1, 1, 0)])
def test_frozen_conv_transpose3d_matches_autograd_in_float64(in_c, out_c, k, stride, padding, output_padding):
    torch.manual_seed(1)
    x = torch.randn(2, in_c, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(in_c, out_c, k, k, k, dtype=torch.float64)
    bias = torch.randn(out_c, dtype=torch.float64, requires_grad=True)
    s, p, o = (stride,) * 3, (padding,) * 3, (output_padding,) * 3
    reference = F.conv_transpose3d(x, weight, bias, s, p, o)
    out, saved = _saved_sizes(lambda: FrozenConvolution.apply(x, weight, bias, s, p, (1, 1, 1), 1, True, o))
    assert torch.equal(out, reference) and saved == [tuple(weight.shape)]
    grad = torch.randn_like(out)
    for mine, theirs in zip(torch.autograd.grad(out, (x, bias), grad), torch.autograd.grad(reference, (x, bias), grad)):
        torch.testing.assert_close(mine, theirs, **TOLERANCE)


def test_frozen_conv_computes_no_input_gradient_the_input_does_not_need():
    """A frozen first layer under a trainable bias (BitFit on a stem) costs one sum: no
    convolution kernel runs in the backward pass."""
    x = torch.randn(2, 1, 8, 8, 8)
    weight, bias = torch.randn(3, 1, 3, 3, 3), torch.zeros(3, requires_grad=True)
    out = FrozenConvolution.apply(x, weight, bias, (2, 2, 2), (1, 1, 1), (1, 1, 1), 1, False, (0, 0, 0))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        out.sum().backward()
    assert not [e.name for e in profile.events() if "conv" in e.name]
    torch.testing.assert_close(bias.grad, torch.full((3,), 4.0 ** 3 * 2))


def test_frozen_batch_norm_matches_autograd_and_keeps_only_the_scale():
    torch.manual_seed(2)
    x = torch.randn(3, 4, 5, 6, 2, dtype=torch.float64, requires_grad=True)
    mean, var = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.5
    weight, bias = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64, requires_grad=True)
    reference = F.batch_norm(x, mean, var, weight, bias, False, 0.0, 1e-5)
    out, saved = _saved_sizes(lambda: frozen_batch_norm(x, mean, var, weight, bias, 1e-5))
    assert torch.equal(out, reference) and saved == [(4,)]
    grad = torch.randn_like(out)
    for mine, theirs in zip(torch.autograd.grad(out, (x, bias), grad), torch.autograd.grad(reference, (x, bias), grad)):
        torch.testing.assert_close(mine, theirs, **TOLERANCE)


def test_frozen_batch_norm_is_right_for_a_transposed_gradient_of_batch_1():
    """CvT's q/k/v BatchNorms get their gradient as a view of transposed (B, N, C) tokens; for
    B = 1 torch 2.13's eval-mode batch_norm backward on the CPU returns a wrong input gradient
    there. The frozen function's is dL/dx = dL/dy * weight / sqrt(running_var + eps)."""
    x = torch.randn(1, 8, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    mean, var = torch.zeros(8, dtype=torch.float64), torch.full((8,), 4.0, dtype=torch.float64)
    weight = torch.full((8,), 3.0, dtype=torch.float64)
    grad = torch.randn(1, 64, 8, dtype=torch.float64).transpose(1, 2).reshape(1, 8, 4, 4, 4)
    out = frozen_batch_norm(x, mean, var, weight, None, 0.0)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], grad * 1.5, **TOLERANCE)


def test_masked_leaky_relu_matches_autograd_and_keeps_a_bool_mask():
    torch.manual_seed(3)
    x = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    x[0, 0, 0] = 0.0  # leaky_relu's backward treats 0 as negative
    x.requires_grad_(True)
    reference = F.leaky_relu(x, 0.2)
    packed = []

    def pack(tensor):
        packed.append(tensor.dtype)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = masked_leaky_relu(x, 0.2)
    assert torch.equal(out, reference) and packed == [torch.bool]
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(reference, x, grad)[0],
                               rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_frozen_functions_run_under_autocast(dtype):
    """Under autocast the forward runs in lower precision and the backward gets such gradients."""
    x = torch.randn(2, 3, 6, 6, 6, requires_grad=True)
    weight, bias = torch.randn(4, 3, 3, 3, 3), torch.zeros(4, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        out = FrozenConvolution.apply(x, weight, bias, (1, 1, 1), (1, 1, 1), (1, 1, 1), 1, False, (0, 0, 0))
        out = masked_leaky_relu(out, 0.01)
    assert out.dtype == dtype
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and bias.grad.dtype == torch.float32 and x.grad.abs().sum() > 0


def _plain_equivalents(monkeypatch):
    """Make the tuned layers call the plain ops instead of the lean functions."""
    def convolution(conv, x):
        return conv.base_class.forward(conv, x)

    monkeypatch.setattr(peft_layers, "frozen_convolution", convolution)
    monkeypatch.setattr(peft_layers, "frozen_batch_norm",
                        lambda x, mean, var, weight, bias, eps: F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps))
    monkeypatch.setattr(peft_layers, "masked_leaky_relu", F.leaky_relu)


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_lean_backbone_gradients_equal_autograd_in_float64(backbone, monkeypatch):
    """Every trainable tensor of the paper's PETITE mix (UNETR: plus BitFit and SSF everywhere)
    gets the same gradient with the lean frozen layers as with autograd's own ops."""
    torch.manual_seed(0)
    model = build_backbone(backbone, "cpu").double()
    apply_peft(model, "bitfit+ssf+lora" if backbone == "unetr" else "enc=vpt+dec=lora+bitfit")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in trainable_parameters(model).values():  # move zero-initialised factors
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    model.train()
    # batch 2: with batch 1, torch's own eval BatchNorm backward is wrong for CvT's transposed
    # token gradients (see test_frozen_batch_norm_is_right_for_a_transposed_gradient_of_batch_1)
    x = torch.rand(2, 1, 64, 64, 64, dtype=torch.float64)
    y = torch.rand(2, 1, 64, 64, 64, dtype=torch.float64)
    reference_model = copy.deepcopy(model)

    def gradients(network):
        loss = F.mse_loss(network(x), y)
        names, params = zip(*trainable_parameters(network).items())
        return dict(zip(names, torch.autograd.grad(loss, params))), loss.detach()

    lean, lean_loss = gradients(model)
    with monkeypatch.context() as patch:
        _plain_equivalents(patch)
        plain, plain_loss = gradients(reference_model)
    assert torch.equal(lean_loss, plain_loss)
    assert set(lean) == set(plain) and len(lean) > 10
    for name in lean:
        torch.testing.assert_close(lean[name], plain[name], **TOLERANCE, msg=lambda text: f"{name}: {text}")
