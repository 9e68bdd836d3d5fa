"""The PEFT spec grammar, presets, the paper's mixes and the per-method training defaults."""
import pytest

from PETITELib.backbones import BACKBONES
from PETITELib.errors import PetiteError
from PETITELib.peft import METHODS, default_hyperparameters, method_catalogue, parse_spec
from PETITELib.hyperparameters import DEVIATIONS, MIX_PERCENT, OPTIMIZER, WARMUP_COSINE
from PETITELib.peft.configs import LoRAConfig, VPTConfig


def test_petite_preset_is_the_papers_best_mix():
    assert parse_spec("petite", "unetr").canonical == "enc=lora(alpha=4,r=4)+dec=ssf+bitfit"
    assert parse_spec("petite", "cvtgan").canonical == "enc=vpt(tokens=0/8/32)+dec=lora(alpha=8,r=8)+bitfit"


def test_the_cpu_cvtgan_takes_rank_4_where_the_paper_takes_8():
    """The 4x narrower cpu generator's LoRA defaults to rank 4 (a DEVIATIONS row); given ranks stay."""
    paper_mix = "enc=vpt+dec=lora+bitfit"
    assert parse_spec(paper_mix, "cvtgan", "cpu").canonical == "enc=vpt(tokens=0/8/32)+dec=lora(alpha=4,r=4)+bitfit"
    assert parse_spec(paper_mix, "cvtgan", "paper").canonical == "enc=vpt(tokens=0/8/32)+dec=lora(alpha=8,r=8)+bitfit"
    assert parse_spec("dec=lora(r=8)", "cvtgan", "cpu").canonical == "dec=lora(alpha=8,r=8)"
    assert parse_spec("dec=lora", "unetr", "cpu") == parse_spec("dec=lora", "unetr")  # UNETR keeps the paper's rank
    assert any("cpu CvT-GAN" in d.setting for d in DEVIATIONS)


def test_terms_get_the_papers_per_part_defaults():
    spec = parse_spec("adapter", "unetr")
    assert spec.canonical == "enc=adapter(rf=16)+dec=adapter(rf=4)"  # Table 7
    assert parse_spec("lora", "cvtgan").terms[0].config == LoRAConfig(r=8, alpha=8.0)
    assert parse_spec("dec=vpt", "cvtgan").terms[0].config == VPTConfig(tokens=(32, 8))  # Table 6
    assert parse_spec("vpt", "unetr").canonical == "enc=vpt(tokens=50)"  # UNETR's CNN decoder has no tokens
    assert parse_spec("enc=vpt(tokens=4)", "cvtgan").canonical == "enc=vpt(tokens=4/4/4)"
    assert parse_spec("gvpt", "unetr").canonical == "enc=gvpt(tokens=50)"  # the gated variant takes VPT's
    assert parse_spec("enc=gvpt+dec=vpt", "cvtgan").canonical == "enc=gvpt(tokens=0/8/32)+dec=vpt(tokens=32/8)"


@pytest.mark.parametrize("text,canonical", [
    ("enc=lora(r=4)+dec=ssf+bitfit", "enc=lora(alpha=4,r=4)+dec=ssf+bitfit"),
    (" bitfit + dec = SSF + encoder=lora( r=4 ) ", "enc=lora(alpha=4,r=4)+dec=ssf+bitfit"),
    ("lora(r=8,alpha=16)", "lora(alpha=16,r=8)"),
    ("lora(alpha=0.5,r=2)", "lora(alpha=0.5,r=2)"),
    ("enc=bitfit+dec=bitfit", "bitfit"),
    ("full", "full"),
])
def test_canonical_form(text, canonical):
    spec = parse_spec(text, "unetr")
    assert spec.canonical == canonical
    assert parse_spec(canonical, "unetr") == spec


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_every_table_6_and_7_mix_is_expressible(backbone):
    mixes = [e for e in method_catalogue(backbone) if e.kind == "mix"]
    assert len(mixes) == {"cvtgan": 12, "unetr": 9}[backbone] == len(MIX_PERCENT[backbone])
    for entry in mixes:
        spec = parse_spec(entry.spec, backbone)
        assert {(t.method, t.part) for t in spec.terms} >= {("bitfit", "encoder"), ("bitfit", "decoder")}
        assert parse_spec(spec.canonical, backbone) == spec


@pytest.mark.parametrize("text,message", [
    ("dora", "unknown PEFT method 'dora'"),
    ("lora(r=0)", "rank r must be a positive integer"),
    ("lora(r=2.5)", "rank r must be a positive integer"),
    ("adapter(rf=0)", "reduction factor"),
    ("mid=lora", "unknown part 'mid'"),
    ("dec=vpt", "unetr's decoder has no layers vpt can act on"),
    ("dec=layernorm", "unetr's decoder has no layers layernorm can act on"),
    ("lora(rank=4)", "lora has no argument 'rank'"),
    ("enc=vpt(tokens=8/8)", "1 prompt stage"),
    ("lora+enc=lora", "applies lora to the encoder twice"),
    ("vpt+gvpt", "gives the encoder prompts twice"),
    ("enc=lora(r=4", "cannot read term"),
    ("", "cannot read term"),
])
def test_bad_specs_are_one_line_errors(text, message):
    with pytest.raises(PetiteError, match=message.replace("(", r"\(")) as info:
        parse_spec(text, "unetr")
    assert "\n" not in str(info.value)


def test_unknown_backbone_is_refused():
    with pytest.raises(PetiteError, match="unknown backbone"):
        parse_spec("lora", "resnet")


def test_supplementary_table_3_defaults():
    assert default_hyperparameters("unetr", "lora").weight_decay == 1e-4
    assert default_hyperparameters("unetr", "vpt").learning_rate == 1e-2
    assert default_hyperparameters("cvtgan", "ssf").weight_decay == 1e-6
    assert default_hyperparameters("cvtgan", "vpt").learning_rate == 1e-3
    for backbone in BACKBONES:  # gvpt, our gated VPT, trains with VPT's column; fullres with Full-FT's
        assert default_hyperparameters(backbone, "gvpt") == default_hyperparameters(backbone, "vpt")
        assert default_hyperparameters(backbone, "fullres") == default_hyperparameters(backbone, "full")
    assert default_hyperparameters("unetr", "full").warmup_fraction == WARMUP_COSINE > 0  # "WarmupCosine"
    petite = default_hyperparameters("unetr", "petite")
    assert (petite.learning_rate, petite.weight_decay, petite.warmup_fraction) == (1e-3, 1e-5, 0.0)
    assert default_hyperparameters("cvtgan", "enc=ssf+dec=lora+bitfit") == default_hyperparameters("cvtgan", "petite")
    # Table 3 lists Adam for CvT-GAN Full-FT; the engine trains everything with AdamW and says so
    assert default_hyperparameters("cvtgan", "full").paper_optimizer == "Adam" and OPTIMIZER == "AdamW"
    assert any(d.setting == "optimizer, CvT-GAN Full-FT" and d.paper.startswith("Adam ") for d in DEVIATIONS)
    for backbone in BACKBONES:
        for method in (m for m in METHODS if m != "fullres"):
            column = default_hyperparameters(backbone, method)
            assert column.paper_optimizer == OPTIMIZER and column.warmup_fraction == 0.0


def test_finetuning_settings_take_the_preset_epochs_and_the_method_column():
    from PETITELib.engine.settings import finetune_defaults, pretrain_defaults

    paper = finetune_defaults("unetr", "paper", "petite")
    assert (paper.epochs, paper.lr, paper.weight_decay, paper.batch_size) == (200, 1e-3, 1e-5, 6)
    assert finetune_defaults("cvtgan", "paper", "enc=ssf+dec=lora+bitfit").epochs == 150  # Table 3's total epochs
    full = finetune_defaults("unetr", "cpu", "full")
    assert (full.epochs, full.warmup_fraction, full.val_every) == (12, WARMUP_COSINE, 4)
    assert finetune_defaults("cvtgan", "cpu", "ssf").weight_decay == 1e-6
    assert (pretrain_defaults("cvtgan", "paper").lr, pretrain_defaults("unetr", "paper").epochs) == (2e-4, 1000)


def test_the_cpu_unetr_petite_adds_full_resolution_tuning_and_stays_under_one_percent():
    """That base barely uses its ViT (docs/benchmarks/gain-by-layers-unetr-cpu.json), so its
    PETITE also trains the full-resolution layers; the paper preset keeps the paper's mix."""
    from PETITELib.backbones import build_backbone
    from PETITELib.peft import apply_peft, count_parameters

    assert parse_spec("petite", "unetr", "cpu").canonical == "enc=lora(alpha=4,r=4)+dec=fullres+dec=ssf+bitfit"
    assert parse_spec("petite", "unetr", "paper").canonical == parse_spec("petite", "unetr").canonical \
        == "enc=lora(alpha=4,r=4)+dec=ssf+bitfit"
    model = build_backbone("unetr", "cpu")
    apply_peft(model, "petite")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {n for n, _ in model.named_parameters() if n.startswith(("encoder1.", "decoder2.", "out."))} <= trainable
    assert 0.5 < count_parameters(model).percent < 1.0


def test_the_cpu_cvtgan_petite_is_full_resolution_tuning_with_encoder_prompts_under_one_percent():
    """On that base the paper's mix recovers little of Full-FT's gain and fullres nearly all
    (docs/benchmarks/cvtgan-spec-candidates.json); the paper preset keeps the paper's mix."""
    from PETITELib.backbones import build_backbone
    from PETITELib.peft import apply_peft, count_parameters

    assert parse_spec("petite", "cvtgan", "cpu").canonical == "enc=vpt(tokens=0/0/8)+fullres"
    assert parse_spec("petite", "cvtgan", "paper").canonical == parse_spec("petite", "cvtgan").canonical
    model = build_backbone("cvtgan", "cpu")
    apply_peft(model, "petite")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    full_resolution = ("encoder.stem.", "decoder.head.up0.", "decoder.head.out.")
    assert {n for n, _ in model.named_parameters() if n.startswith(full_resolution)} < trainable
    assert not any(n.startswith("decoder.stage") for n in trainable)
    assert 0.5 < count_parameters(model).percent < 1.0
    assert any(d.setting == "PETITE of the cpu CvT-GAN" for d in DEVIATIONS)
