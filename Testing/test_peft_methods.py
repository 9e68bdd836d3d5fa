"""The PEFT guarantees, for every method on both backbones (cpu preset, one 64^3 volume):

- an additive method leaves the output unchanged when applied (lora, adapter, ssf, gvpt), except
  the paper's vpt, whose prompts share the image tokens' softmax from the start;
- vpt's prompts enter at the second ViT block / at each prompted CvT stage and attend jointly
  with the image tokens (checked against a hand-written softmax), gvpt's through a gate;
- exactly the method's tensors require grad, each gets a nonzero gradient and nothing else
  gets one, and the trainable count counts exactly those;
- LoRA and SSF merge into the base weights (same output, layers and hooks gone) and unmerge
  again (same output and base weights to 1e-6, layers back and training);
- PEFT layers are modules, not hooks: tensor names stay the base's plus the method's;
- no backward kernel runs below the lowest trainable tensor, and a frozen conv computes only
  the input gradient it is asked for;
- removing a spec restores the base exactly.
"""
import copy
import sys

import pytest
import torch
from torch import nn

from PETITELib.backbones import BACKBONES, build_backbone
from PETITELib.errors import PetiteError
from PETITELib.peft import (METHODS, apply_peft, base_weights_sha256, count_parameters, merge_peft,
                            method_catalogue, parse_spec, peft_state_dict, remove_peft, trainable_parameters,
                            unmerge_peft)
from PETITELib.peft.layernorm import NORM_TYPES
from PETITELib.peft.layers import TunedLayer

IDENTITY_AT_INIT = [name for name, method in METHODS.items() if method.kind == "additive" and method.identity_at_init]
MARKERS = {"lora": ".lora.", "adapter": ".adapter.", "ssf": ".ssf.", "vpt": ".prompt_tokens", "gvpt": ".prompt_"}
# every method at once (the two prompt methods cannot share a part: one spec with each)
ALL_METHODS = ["+".join(m for m in METHODS if m != other) for other in ("gvpt", "vpt")]


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(scope="module", params=list(BACKBONES))
def base(request):
    """(plain cpu-preset model, input, target, eval output of the plain model)."""
    torch.manual_seed(0)
    model = build_backbone(request.param, "cpu").eval()
    x, y = torch.randn(1, 1, 64, 64, 64), torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        reference = model(x)
    return model, x, y, reference


def _output(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def _perturb(model, scale=0.01):
    """Move every trainable tensor a little, as training would (zero-initialised factors too)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in trainable_parameters(model).values():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


def _expected_trainable(model, base_names, method):
    """The tensors ``method`` should train when applied to every part, found independently."""
    if method == "bitfit":
        return {n for n in base_names if n.endswith(".bias") and n in dict(model.named_parameters())}
    if method == "fullres":  # the layers at the input's full resolution, named here independently
        layers = {"unetr": ("encoder1.", "decoder2.", "out."),
                  "cvtgan": ("encoder.stem.", "decoder.head.up0.", "decoder.head.out.")}[model.backbone_name]
        return {n for n in base_names if n.startswith(layers) and n in dict(model.named_parameters())}
    if method == "layernorm":
        return {f"{name}.{attr}" for name, module in model.named_modules() if isinstance(module, NORM_TYPES)
                for attr in ("weight", "bias") if isinstance(getattr(module, attr, None), nn.Parameter)}
    return {n for n, _ in model.named_parameters() if n not in base_names}


def _hook_count(model):
    return sum(len(module._forward_hooks) for module in model.modules())


def test_only_vpt_among_additive_methods_is_not_identity_at_init():
    assert [name for name, m in METHODS.items() if m.kind == "additive" and not m.identity_at_init] == ["vpt"]


@pytest.mark.parametrize("method", IDENTITY_AT_INIT)
def test_additive_method_is_identity_when_applied(base, method):
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    apply_peft(model, method)
    assert (_output(model, x) - reference).abs().max() <= 1e-6


@pytest.mark.parametrize("method", list(METHODS))
def test_exactly_the_method_tensors_train_and_all_get_gradients(base, method):
    """Zero-initialised factors (LoRA B, adapter up-projection, gvpt gates) make the other
    factor's gradient exactly zero at the very first step (dL/dA = B^T ...). So before the
    gradient check every trainable tensor is moved a little, as one optimizer step would."""
    plain, x, y, _ = base
    model = copy.deepcopy(plain)
    base_names = set(model.state_dict())
    apply_peft(model, method)
    trainable = trainable_parameters(model)
    expected = _expected_trainable(model, base_names, method)
    assert set(trainable) == expected and expected
    if method in MARKERS:
        assert all(MARKERS[method] in name for name in trainable)
    count = count_parameters(model)
    assert count.trainable == sum(p.numel() for p in trainable.values())
    assert count.total == sum(p.numel() for p in plain.parameters())
    assert 0 < count.percent < 100

    _perturb(model)
    model.train()
    nn.functional.mse_loss(model(x), y).backward()
    without_gradient = [n for n, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not without_gradient
    assert not [n for n, p in model.named_parameters() if n not in trainable and p.grad is not None]


def test_zero_initialised_factors_block_the_first_gradient_of_the_other_factor(base):
    """Why the test above perturbs first: at initialisation LoRA's A gets exactly no gradient."""
    plain, x, y, _ = base
    model = copy.deepcopy(plain)
    apply_peft(model, "enc=lora")
    model.train()
    nn.functional.mse_loss(model(x), y).backward()
    grads = {n.rsplit(".", 1)[1]: p.grad for n, p in trainable_parameters(model).items()}
    assert not grads["down"].any() and grads["up"].any()


@pytest.mark.parametrize("method", [name for name, method in METHODS.items() if method.mergeable])
def test_mergeable_methods_fold_into_the_base_weights(base, method):
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    apply_peft(model, method)
    _perturb(model, scale=0.1)
    before = _output(model, x)
    assert (before - reference).abs().max() > 1e-4  # the perturbation matters
    assert merge_peft(model) == [method]
    assert (_output(model, x) - before).abs().max() <= 1e-5
    assert not [n for n, _ in model.named_modules() if n.endswith(f".{method}")]
    assert _hook_count(model) == 0
    assert not trainable_parameters(model)
    remove_peft(model)
    assert torch.equal(_output(model, x), reference)


@pytest.mark.parametrize("spec", [name for name, method in METHODS.items() if method.mergeable]
                         + ["enc=lora+dec=ssf+bitfit"])
def test_unmerge_restores_the_layers_and_the_base_weights(base, spec):
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    apply_peft(model, spec)
    _perturb(model, scale=0.1)
    before = _output(model, x)
    tensors = peft_state_dict(model)
    merge_peft(model)
    assert unmerge_peft(model)
    assert (_output(model, x) - before).abs().max() <= 1e-5  # as merging: float32 rounding of the weights
    plain_state = plain.state_dict()
    state = {k: v for k, v in model.state_dict().items() if k in plain_state}
    assert set(state) == set(plain_state)  # no bias or affine weight left behind by the merge
    in_place = {n for n in tensors if n in plain_state}  # BitFit trains base tensors in place
    for name, value in plain_state.items():  # the base weights come back to 1e-6
        if name not in in_place:
            torch.testing.assert_close(state[name], value, rtol=0, atol=1e-6)
    again = peft_state_dict(model)  # its tensors train again and can be saved
    assert set(again) == set(tensors)
    for name in tensors:  # exact, except a BitFit bias an SSF was merged into (rounding)
        torch.testing.assert_close(again[name], tensors[name], rtol=0, atol=1e-6)
    assert set(trainable_parameters(model)) == set(tensors)
    remove_peft(model)
    assert torch.equal(_output(model, x), reference)


@pytest.mark.parametrize("spec", ALL_METHODS)
def test_peft_layers_are_modules_with_the_base_names(base, spec):
    """No forward hooks: each adapted layer is its own type's tuned subclass with the method as
    a child; base tensors keep their names, and removal gives back the plain types."""
    plain, *_ = base
    model = copy.deepcopy(plain)
    types = {name: type(module) for name, module in model.named_modules()}
    apply_peft(model, spec)
    assert _hook_count(model) == 0
    tuned = {name: module for name, module in model.named_modules() if isinstance(module, TunedLayer)}
    assert tuned and all(isinstance(module, types[name]) for name, module in tuned.items())
    assert set(plain.state_dict()) <= set(model.state_dict())
    remove_peft(model)
    assert {name: type(module) for name, module in model.named_modules()} == types


def _convolution_kernels(model, x, y):
    """(convolution kernels run by the backward pass, forward convs whose input needed a
    gradient by name, convs whose input needed none)."""
    needs, skips = [], []

    def record(module, args, output):
        (needs if args[0].requires_grad else skips).append(module)

    convs = [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    handles = [m.register_forward_hook(record) for m in convs]
    loss = nn.functional.mse_loss(model(x), y)
    for handle in handles:
        handle.remove()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        loss.backward()
    names = [event.name for event in profile.events()]
    kernels = names.count("aten::convolution") + names.count("aten::convolution_backward")
    return kernels, needs, skips


@pytest.mark.parametrize("spec", ["petite", "bitfit"])
def test_no_backward_kernel_below_the_lowest_trainable_tensor(base, spec):
    """Counted with the profiler: the backward pass runs exactly one convolution kernel per conv
    whose input or weight needs a gradient (a frozen one: the input gradient alone), none for the
    frozen first layers whose input is the image (BitFit trains their biases: one sum each).
    The cpu PETITE of both backbones trains their full-resolution convs (fullres): one kernel each too."""
    plain, x, y, _ = base
    model = copy.deepcopy(plain).train()
    apply_peft(model, spec)
    _perturb(model)
    kernels, needs, skips = _convolution_kernels(model, x, y)
    trained = [m for m in needs + skips if m.weight.requires_grad]
    first = model.vit.patch_embedding.patch_embeddings if plain.backbone_name == "unetr" else model.encoder["stem"][0]
    if not first.weight.requires_grad:
        assert first in skips and first.bias.requires_grad and first.bias.grad is not None
    assert kernels == len(set(needs) | set(trained)) > 0
    assert all(m.weight.grad is None for m in needs if not m.weight.requires_grad)
    assert bool(trained) == (spec == "petite")


def test_lora_touches_only_q_and_k_of_the_fused_unetr_qkv():
    torch.manual_seed(0)
    with torch.device("meta"):
        model = build_backbone("unetr", "cpu")
    model = model.to_empty(device="cpu")
    nn.init.normal_(model.vit.blocks[0].attn.qkv.weight)
    original = model.vit.blocks[0].attn.qkv.weight.detach().clone()
    apply_peft(model, "enc=lora(r=4)")
    lora = model.vit.blocks[0].attn.qkv.lora
    hidden = model.size.hidden_size
    assert lora.up.shape == (2, hidden, 4)  # one pair for q, one for k, none for v
    _perturb(model)
    merge_peft(model)
    merged = model.vit.blocks[0].attn.qkv.weight
    assert not torch.equal(merged[:2 * hidden], original[:2 * hidden])
    assert torch.equal(merged[2 * hidden:], original[2 * hidden:])


@pytest.mark.parametrize("spec", ALL_METHODS + ["petite"])
def test_remove_restores_the_base_exactly(base, spec):
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    sha = base_weights_sha256(model)
    apply_peft(model, spec)
    _perturb(model)
    assert base_weights_sha256(model) == sha  # the base hash ignores PEFT changes
    remove_peft(model)
    assert set(model.state_dict()) == set(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert _hook_count(model) == 0 and all(p.requires_grad for p in model.parameters())
    assert torch.equal(_output(model, x), reference)


def test_every_catalogue_entry_applies_and_starts_as_its_methods_do(base):
    """Every entry applies; a spec of identity-at-init methods (UNETR's petite) leaves the output
    unchanged, one with vpt (CvT-GAN's petite: the paper's VPT in the encoder) does not."""
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    for entry in method_catalogue(plain.backbone_name):
        spec = apply_peft(model, entry.spec)
        assert count_parameters(model).trainable > 0, entry.name
        change = (_output(model, x) - reference).abs().max()
        if all(METHODS[method].identity_at_init for method in spec.methods):
            assert change <= 1e-6, entry.name
        else:
            assert change > 1e-4, entry.name
        remove_peft(model)
    assert "vpt" in parse_spec("petite", plain.backbone_name).methods or plain.backbone_name == "unetr"


def test_gvpt_prompts_act_once_the_gates_open(base):
    plain, x, _, reference = base
    model = copy.deepcopy(plain)
    apply_peft(model, "gvpt")
    with torch.no_grad():
        for name, parameter in trainable_parameters(model).items():
            if name.endswith("prompt_gate"):
                parameter.fill_(0.5)
    out = _output(model, x)
    assert out.shape == reference.shape and (out - reference).abs().max() > 1e-4


def _block_outputs(model, x):
    """The image-token outputs (prompts dropped) of every ViT block (UNETR) or CvT stage."""
    outputs = []
    modules = list(model.vit.blocks) if model.backbone_name == "unetr" else list(model._stages().values())
    handles = [m.register_forward_hook(lambda module, args, out: outputs.append(out)) for m in modules]
    _output(model, x)
    for handle in handles:
        handle.remove()
    if model.backbone_name == "unetr":  # a block's output still carries the prompts in front
        return [out[:, out.shape[1] - 64:] for out in outputs]
    return outputs


def test_vpt_prompts_change_the_output_from_where_they_enter_and_only_prompts_train(base):
    """The paper's VPT: prompts enter at the 2nd ViT block (UNETR) / at each stage with a nonzero
    count (CvT-GAN's encoder 0/8/32: stages 2 and 3), so what comes before is unchanged and what
    comes after changes at once, before any training. Only the prompt tokens train, and at
    initialisation they already get a gradient (gvpt's wait for their gates)."""
    plain, x, y, reference = base
    before = _block_outputs(plain, x)
    model = copy.deepcopy(plain)
    apply_peft(model, "enc=vpt")
    after = _block_outputs(model, x)
    first = 1  # UNETR: prompts enter at block 2; CvT-GAN (0/8/32): at encoder stage 2
    assert all(torch.equal(a, b) for a, b in zip(after[:first], before[:first]))
    assert all((a - b).abs().max() > 1e-5 for a, b in zip(after[first:], before[first:]))
    assert (_output(model, x) - reference).abs().max() > 1e-4
    trainable = trainable_parameters(model)
    assert trainable and all(name.endswith(".prompt_tokens") for name in trainable)
    model.train()
    nn.functional.mse_loss(model(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())
    gated = copy.deepcopy(plain)
    apply_peft(gated, "enc=gvpt")
    gated.train()
    nn.functional.mse_loss(gated(x), y).backward()
    prompts = [p for n, p in trainable_parameters(gated).items() if n.endswith(".prompt_tokens")]
    assert prompts and not any(p.grad.any() for p in prompts)


def _manual_attention(q, k, v, num_prompts, gate):
    """Reference attention written out: one softmax over all keys, or two softmaxes with a gate."""
    scale = q.shape[-1] ** -0.5

    def attend(keys, values):
        return torch.softmax(q @ keys.transpose(-1, -2) * scale, dim=-1) @ values

    if gate is None:
        return attend(k, v)
    return attend(k[:, :, num_prompts:], v[:, :, num_prompts:]) \
        + gate.view(1, -1, 1, 1) * attend(k[:, :, :num_prompts], v[:, :, :num_prompts])


@pytest.mark.parametrize("method", ["vpt", "gvpt"])
def test_prompt_attention_is_one_softmax_for_vpt_and_two_for_gvpt(base, method, monkeypatch):
    """The attention of a prompted UNETR block / CvT block, recomputed from its own q, k, v with
    a hand-written softmax: for vpt the prompt keys sit in the same softmax as the image keys."""
    plain, x, *_ = base
    model = copy.deepcopy(plain)
    apply_peft(model, f"enc={method}")
    _perturb(model, scale=0.5)  # open the gates
    attention = model.vit.blocks[1].attn if plain.backbone_name == "unetr" else model.encoder["stage2"].blocks[0].attn
    module = sys.modules[type(attention).__module__]
    original, seen = module.prompt_attention, []

    def recording(q, k, v, num_prompts, gate, dropout_p=0.0):
        out = original(q, k, v, num_prompts, gate, dropout_p)
        seen.append((q, k, v, num_prompts, gate, out))
        return out

    monkeypatch.setattr(module, "prompt_attention", recording)
    _output(model, x)
    prompted = [call for call in seen if call[3]]
    # UNETR: blocks 2-12 of 12; CvT-GAN (0/8/32): encoder stages 2 and 3, 2 blocks each, of 8 attentions
    assert (len(prompted), len(seen)) == {"unetr": (11, 12), "cvtgan": (4, 8)}[plain.backbone_name]
    for q, k, v, num_prompts, gate, out in prompted:
        assert k.shape[2] > num_prompts > 0 and (gate is None) == (method == "vpt")
        torch.testing.assert_close(out, _manual_attention(q, k, v, num_prompts, gate), rtol=1e-4, atol=1e-5)
    if method == "vpt":  # every image query gives the prompts part of its attention weights
        q, k, _, num_prompts, *_ = prompted[0]
        weights = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
        assert weights[..., num_prompts:, :num_prompts].sum(-1).min() > 0


@pytest.mark.parametrize("spec", ["vpt", "gvpt"])
def test_prompted_models_keep_the_lean_frozen_layers(base, spec):
    """Prompt methods add no layer; every frozen convolution still runs its lean autograd
    function: one input-gradient kernel per conv whose input needs a gradient, none for the rest."""
    plain, x, y, _ = base
    model = copy.deepcopy(plain).train()
    apply_peft(model, spec)
    _perturb(model)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    assert convs and all(isinstance(m, TunedLayer) for m in convs)
    kernels, needs, skips = _convolution_kernels(model, x, y)
    assert kernels == len(needs) > 0 and skips
    assert merge_peft(model) == []  # prompts cannot be folded into weights


def test_frozen_prefix_stays_out_of_the_autograd_graph(base):
    """With only decoder tensors trainable, the encoder's activations need no gradient, so
    autograd neither stores them nor runs backward through the encoder."""
    plain, x, _, _ = base
    model = copy.deepcopy(plain).train()
    apply_peft(model, "dec=ssf")
    encoder_outputs = []
    encoder_end = model.vit.norm if plain.backbone_name == "unetr" else model.encoder["stage3"]
    encoder_end.register_forward_hook(lambda module, args, out: encoder_outputs.append(out))
    model(x).mean().backward()
    assert len(encoder_outputs) == 1 and not encoder_outputs[0].requires_grad


def test_batchnorm_statistics_stay_frozen_during_peft():
    torch.manual_seed(0)
    model = build_backbone("cvtgan", "cpu")
    norm = model.encoder["stage1"].blocks[0].attn.conv_q[1]
    running_mean = norm.running_mean.clone()
    apply_peft(model, "lora")
    model.train()
    assert not norm.training
    model(torch.randn(1, 1, 64, 64, 64))
    assert torch.equal(norm.running_mean, running_mean)
    remove_peft(model)
    model.train()
    assert norm.training


def test_a_second_spec_is_refused_until_the_first_is_removed():
    with torch.device("meta"):
        model = build_backbone("cvtgan", "cpu")
    apply_peft(model, "lora")
    with pytest.raises(PetiteError, match="already carries"):
        apply_peft(model, "ssf")
    remove_peft(model)
    apply_peft(model, "ssf")
