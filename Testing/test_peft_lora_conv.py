"""LoRA on a convolution runs as one convolution with the composed weight W + s·B·A (the way
``merge`` folds it), which must equal the additive form y + s·up(down(x)) in value and in the
gradients of the LoRA factors and of a trainable bias (float64, CPU, to 1e-10)."""
import pytest
import torch
from torch import nn

from PETITELib.peft.layers import attach_method
from PETITELib.peft.lora import LoRAConv
from PETITELib.peft.ssf import SSFOutput


def _tuned(conv: nn.Module, ssf: bool) -> nn.Module:
    torch.manual_seed(0)
    conv = conv.double()
    conv.weight.requires_grad_(False)
    lora = LoRAConv(conv, r=2, alpha=4.0).double()
    with torch.no_grad():
        lora.up.normal_()  # a trained-looking update (up starts at zero)
    attach_method(conv, "lora", lora)
    if ssf:
        attach_method(conv, "ssf", SSFOutput(conv.out_channels, 1).double())
    return conv


@pytest.mark.parametrize("make", [lambda: nn.Conv3d(3, 4, 3, padding=1),
                                  lambda: nn.Conv3d(3, 4, 2, stride=2),
                                  lambda: nn.ConvTranspose3d(3, 4, 2, stride=2)])
@pytest.mark.parametrize("ssf", [False, True])
def test_a_composed_lora_convolution_equals_the_additive_form(make, ssf, monkeypatch):
    conv = _tuned(make(), ssf)
    x = torch.randn(2, 3, 6, 6, 6, dtype=torch.float64, requires_grad=True)
    with monkeypatch.context() as patch:  # the composed form never runs the narrow convolution
        patch.setattr(LoRAConv, "forward", lambda *a: pytest.fail("the additive LoRA path ran"))
        composed = conv(x)
    lora = conv.lora
    base = conv.base_output(x)
    additive = lora(conv, x, base)
    if ssf:
        additive = conv.ssf(conv, x, additive)
    assert torch.allclose(composed, additive, rtol=0, atol=1e-10)
    trainable = [lora.down, lora.up, conv.bias, x]
    grads_composed = torch.autograd.grad((composed ** 2).sum(), trainable)
    grads_additive = torch.autograd.grad((additive ** 2).sum(), trainable)
    for a, b in zip(grads_composed, grads_additive):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


def test_lora_after_another_output_method_keeps_the_additive_form():
    """Only leading LoRA layers compose: after SSF, LoRA still adds to SSF's output."""
    torch.manual_seed(0)
    conv = nn.Conv3d(2, 3, 3, padding=1).double()
    conv.weight.requires_grad_(False)
    attach_method(conv, "ssf", SSFOutput(3, 1).double())
    lora = LoRAConv(conv, r=2, alpha=2.0).double()
    with torch.no_grad():
        lora.up.normal_()
        conv.ssf.scale.mul_(2.0)
    attach_method(conv, "lora", lora)
    x = torch.randn(1, 2, 5, 5, 5, dtype=torch.float64)
    expected = lora(conv, x, conv.ssf(conv, x, conv.base_output(x)))
    assert torch.allclose(conv(x), expected, rtol=0, atol=1e-12)
