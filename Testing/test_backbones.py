"""Backbones: shapes, encoder/decoder parts, presets, residual, checkpointing, discriminator."""
import pytest
import torch

from PETITELib.backbones import BACKBONES, PRESETS, build_backbone, build_discriminator
from PETITELib.errors import PetiteError

BACKBONE_NAMES = list(BACKBONES)


pytestmark = pytest.mark.usefixtures("one_intra_op_thread")


@pytest.fixture(scope="module")
def volume():
    torch.manual_seed(0)
    return torch.randn(1, 1, 64, 64, 64)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_cpu_preset_maps_64_cube_to_64_cube(name, volume):
    torch.manual_seed(0)
    model = build_backbone(name, "cpu").eval()
    with torch.no_grad():
        out = model(volume)
    assert out.shape == volume.shape and torch.isfinite(out).all()
    assert model.backbone_name == name and model.preset == "cpu" and model.options == {"residual": True}


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_residual_option_adds_the_input(name, volume):
    torch.manual_seed(0)
    plain = build_backbone(name, "cpu", residual=False).eval()
    residual = build_backbone(name, "cpu").eval()
    residual.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.allclose(residual(volume), plain(volume) + volume, atol=1e-6)


@pytest.mark.parametrize("name", BACKBONE_NAMES)
@pytest.mark.parametrize("preset", PRESETS)
def test_parts_split_every_parameter_once(name, preset):
    with torch.device("meta"):
        model = build_backbone(name, preset)
    parts = model.peft_parts()
    assert set(parts) == {"encoder", "decoder"}
    for parameter_name, _ in model.named_parameters():
        owners = [part for part, sites in parts.items() if sites.owns(parameter_name)]
        assert len(owners) == 1, parameter_name
    assert all(parts[p].lora and parts[p].adapters and parts[p].ssf for p in parts)


def test_paper_sizes():
    with torch.device("meta"):
        unetr = build_backbone("unetr", "paper")
        cvtgan = build_backbone("cvtgan", "paper")
        discriminator = build_discriminator("cvtgan", "paper")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 92e6 < count(unetr) < 93e6  # MONAI UNETR, hidden 768, MLP 3072, 12 heads, 12 layers
    assert 28e6 < count(cvtgan) < 30e6  # "about 29 M generator parameters at 64^3"
    assert count(discriminator) > 0
    assert not any("norm_cross_attn" in n for n, _ in unetr.named_parameters())  # unused in MONAI's blocks


def test_unetr_encoder_is_the_vit_and_decoder_the_cnn_paths():
    with torch.device("meta"):
        model = build_backbone("unetr", "cpu")
    parts = model.peft_parts()
    assert parts["encoder"].prefixes == ("vit.",)
    assert parts["decoder"].owns("encoder1.layer.conv1.conv.weight") and parts["decoder"].owns("out.conv.conv.bias")
    assert not parts["decoder"].prompt_stages  # a CNN decoder has no tokens for VPT


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_gradient_checkpointing_gives_the_same_gradients(name, volume):
    torch.manual_seed(0)
    plain = build_backbone(name, "cpu").train()
    checkpointed = build_backbone(name, "cpu", gradient_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    for model in (plain, checkpointed):
        model(volume).square().mean().backward()
    for (n, a), (_, b) in zip(plain.named_parameters(), checkpointed.named_parameters()):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), n


def test_discriminator_gives_patch_logits(volume):
    torch.manual_seed(0)
    discriminator = build_discriminator("cvtgan", "cpu").eval()
    with torch.no_grad():
        logits = discriminator(volume, volume)
    assert logits.shape == (1, 1, 4, 4, 4)
    with pytest.raises(PetiteError, match="no discriminator"):
        build_discriminator("unetr", "cpu")


@pytest.mark.parametrize("name,preset,message", [("unet", "cpu", "unknown backbone"),
                                                 ("unetr", "gpu", "unknown preset")])
def test_unknown_backbone_or_preset_is_a_one_line_error(name, preset, message):
    with pytest.raises(PetiteError, match=message) as info:
        build_backbone(name, preset)
    assert "\n" not in str(info.value)


def test_wrong_input_shape_is_refused():
    with torch.device("meta"):
        model = build_backbone("cvtgan", "cpu")
    with pytest.raises(PetiteError, match=r"\(B, 1, 64, 64, 64\)"):
        model(torch.zeros(1, 1, 32, 32, 32, device="meta"))


def test_a_monai_without_the_edited_internals_fails_with_one_line_naming_monai(monkeypatch):
    import monai
    from monai.networks.blocks.transformerblock import TransformerBlock

    original = TransformerBlock.__init__

    def without_cross_norm(self, *args, **kwargs):  # what a MONAI release that dropped the attribute does
        original(self, *args, **kwargs)
        del self.norm_cross_attn

    monkeypatch.setattr(TransformerBlock, "__init__", without_cross_norm)
    with pytest.raises(PetiteError, match=f"MONAI {monai.__version__}: TransformerBlock has no 'norm_cross_attn'"):
        build_backbone("unetr", "cpu")
