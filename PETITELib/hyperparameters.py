"""Every setting PETITE trains with, in one table, beside the paper's values it comes from.

The one source for:

- each PEFT method's arguments per backbone and part (paper Table 1, Tables 6/7);
- the ``petite`` preset, the paper's best Mix-PEFT per backbone (Table 2, Tables 6/7);
- the paper's percentages of trainable parameters (Table 1) and its Mix-PEFT combinations
  (Tables 6/7), which ``petite methods`` compares with its own counts;
- each method's fine-tuning learning rate, weight decay and schedule (supplementary Table 3);
- the settings of ``petite pretrain`` and ``petite finetune`` per preset and backbone: ``paper``
  as in the paper's Sec. 3 (batch 6, 1000 pre-training epochs, 150 CvT-GAN / 200 UNETR
  fine-tuning epochs, Table 3's "Total epochs"), ``cpu`` shorter, so that a run fits a laptop.

Where the engine departs from the paper, or fills in what the paper leaves open,
:data:`DEVIATIONS` says so and why. Readers: :mod:`PETITELib.peft` (spec defaults, presets,
catalogue, :func:`PETITELib.peft.default_hyperparameters`), :mod:`PETITELib.engine.settings`
(training settings) and the generated tables of docs/training.md
(:mod:`PETITELib.reports.hyperparameters`). Plain data: this module imports nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

# --- PEFT method arguments (paper Table 1; Tables 6/7 for the per-part values) ----------------
# METHOD_ARGUMENTS[backbone][method][part]: the arguments a spec term starts from, or None where
# the method has nothing to act on in that part (UNETR's CNN decoder has no token sequence for
# VPT and no LayerNorm). LoRA's alpha defaults to its rank (scaling 1). VPT token tuples have one
# count per prompt stage of the part; gvpt (our gated VPT, not in the paper) takes VPT's;
# fullres (ours, not in the paper) trains the layers at full resolution outright (UNETR: all in
# the CNN part, which is what PETITE calls its decoder).
METHOD_ARGUMENTS: Dict[str, Dict[str, Dict[str, Optional[dict]]]] = {
    "unetr": {
        "layernorm": {"encoder": {}, "decoder": None},
        "bitfit": {"encoder": {}, "decoder": {}},
        "lora": {"encoder": {"r": 4}, "decoder": {"r": 4}},
        "adapter": {"encoder": {"rf": 16}, "decoder": {"rf": 4}},
        "ssf": {"encoder": {}, "decoder": {}},
        "vpt": {"encoder": {"tokens": (50,)}, "decoder": None},
        "gvpt": {"encoder": {"tokens": (50,)}, "decoder": None},
        "fullres": {"encoder": None, "decoder": {}},
    },
    "cvtgan": {
        "layernorm": {"encoder": {}, "decoder": {}},
        "bitfit": {"encoder": {}, "decoder": {}},
        "lora": {"encoder": {"r": 8}, "decoder": {"r": 8}},
        "adapter": {"encoder": {"rf": 8}, "decoder": {"rf": 8}},
        "ssf": {"encoder": {}, "decoder": {}},
        "vpt": {"encoder": {"tokens": (0, 8, 32)}, "decoder": {"tokens": (32, 8)}},
        "gvpt": {"encoder": {"tokens": (0, 8, 32)}, "decoder": {"tokens": (32, 8)}},
        "fullres": {"encoder": {}, "decoder": {}},
    },
}

# PRESET_METHOD_ARGUMENTS[preset][backbone][method][part]: where a model preset departs from
# METHOD_ARGUMENTS. The cpu CvT-GAN divides every width by 4 (1/16 of the parameters) while a
# LoRA of fixed rank shrinks only 4x, so rank 8 trains 4x the paper's share there (the paper's
# mix just over 1 %); rank 4, one of the ranks the paper found stable (Sec. 2.2:
# r = 1, 4, 8), keeps it under the paper's 1 %. See DEVIATIONS.
PRESET_METHOD_ARGUMENTS: Dict[str, Dict[str, Dict[str, Dict[str, dict]]]] = {
    "cpu": {"cvtgan": {"lora": {"encoder": {"r": 4}, "decoder": {"r": 4}}}},
}


def method_arguments(backbone: str, method: str, part: str, preset: Optional[str] = None) -> Optional[dict]:
    """The arguments a spec term of ``method`` on ``part`` starts from for ``backbone`` at model
    ``preset`` (None: the paper's model), or None where the method has nothing to act on."""
    paper = METHOD_ARGUMENTS[backbone][method][part]
    if paper is None:
        return None
    override = PRESET_METHOD_ARGUMENTS.get(preset or "", {}).get(backbone, {}).get(method, {}).get(part, {})
    return {**paper, **override}


# The paper's best Mix-PEFT per backbone (Table 2, Tables 6/7): spec presets by name.
PRESETS: Dict[str, Dict[str, str]] = {
    "petite": {
        "unetr": "enc=lora(r=4)+dec=ssf+bitfit",
        "cvtgan": "enc=vpt(tokens=0/8/32)+dec=lora+bitfit",  # rank: method_arguments
    },
}

# MODEL_PRESET_SPECS[model preset][spec preset][backbone]: where a model preset's spec preset departs
# from PRESETS. The cpu UNETR base barely uses its ViT: Full-FT's gain on a new scanner lives in
# the full-resolution CNN layers (docs/benchmarks/gain-by-layers-unetr-cpu.json), which the paper's
# mix never trains, so its PETITE adds ``dec=fullres`` (staying under 1 %). On the cpu CvT-GAN
# base the paper's mix recovers a quarter of Full-FT's validation gain on scanner 4 and
# ``fullres`` nearly all of it, so its PETITE is ``fullres`` with the paper's encoder prompts of
# the last stage (docs/benchmarks/cvtgan-spec-candidates.json). See DEVIATIONS.
MODEL_PRESET_SPECS: Dict[str, Dict[str, Dict[str, str]]] = {
    "cpu": {"petite": {"unetr": "enc=lora(r=4)+dec=ssf+dec=fullres+bitfit",
                       "cvtgan": "enc=vpt(tokens=0/0/8)+fullres"}},
}


def preset_spec(name: str, backbone: str, preset: Optional[str] = None) -> str:
    """The spec text of spec preset ``name`` (e.g. "petite") for ``backbone`` at model ``preset``
    (None: the paper's model)."""
    return MODEL_PRESET_SPECS.get(preset or "", {}).get(name, {}).get(backbone, PRESETS[name][backbone])


# Paper Table 1: % trainable parameters of each single method, the petite preset and full.
TABLE1_PERCENT: Dict[str, Dict[str, float]] = {
    "cvtgan": {"layernorm": 0.041, "bitfit": 0.12, "lora": 0.45, "adapter": 0.71, "ssf": 0.16,
               "vpt": 0.02, "petite": 0.32, "full": 100.0},
    "unetr": {"layernorm": 0.037, "bitfit": 0.07, "lora": 0.46, "adapter": 0.44, "ssf": 0.11,
              "vpt": 0.038, "petite": 0.51, "full": 100.0},
}

# Paper Tables 6 (CvT-GAN) and 7 (UNETR): every feasible (encoder method, decoder method) mix,
# with BitFit everywhere and the per-part arguments above, -> the paper's % trainable parameters.
MIX_PERCENT: Dict[str, Dict[Tuple[str, str], float]] = {
    "cvtgan": {("lora", "adapter"): 0.69, ("lora", "ssf"): 0.58, ("lora", "vpt"): 0.28,
               ("adapter", "lora"): 0.69, ("adapter", "ssf"): 0.78, ("adapter", "vpt"): 0.87,
               ("vpt", "lora"): 0.32, ("vpt", "adapter"): 0.28, ("vpt", "ssf"): 0.46,
               ("ssf", "lora"): 0.35, ("ssf", "adapter"): 0.29, ("ssf", "vpt"): 0.38},
    "unetr": {("lora", "adapter"): 0.51, ("lora", "ssf"): 0.51,
              ("adapter", "lora"): 0.64, ("adapter", "ssf"): 0.95,
              ("vpt", "lora"): 0.53, ("vpt", "adapter"): 0.42, ("vpt", "ssf"): 0.11,
              ("ssf", "adapter"): 0.28, ("ssf", "lora"): 0.52},
}

# --- Fine-tuning per method (supplementary Table 3) -------------------------------------------
OPTIMIZER = "AdamW"  # every job and method (the engine's objectives.adamw); see DEVIATIONS
WARMUP_COSINE = 0.05  # Table 3's "WarmupCosine": linear warm-up over this share of the steps


@dataclass(frozen=True)
class MethodTraining:
    """One column of supplementary Table 3 for one backbone.

    learning_rate: peak learning rate; weight_decay: AdamW's (decoupled) weight decay;
    warmup_fraction: share of the steps with a linear warm-up before the cosine decay to zero
    (:data:`WARMUP_COSINE` for Table 3's "WarmupCosine", 0 for "CosineAnneal");
    paper_optimizer: the optimizer Table 3 lists (the engine uses :data:`OPTIMIZER` throughout).
    """

    learning_rate: float
    weight_decay: float
    warmup_fraction: float = 0.0
    paper_optimizer: str = "AdamW"


# TABLE3[backbone][column]: a spec of one method gets that method's column, ``full`` the Full-FT
# column, any mix (including a method + BitFit) the PETITE column, which the paper used for its
# Mix-PEFT runs (see PETITELib.peft.default_hyperparameters).
TABLE3: Dict[str, Dict[str, MethodTraining]] = {
    "cvtgan": {
        "full": MethodTraining(1e-3, 1e-5, paper_optimizer="Adam"),
        "layernorm": MethodTraining(1e-3, 1e-5),
        "bitfit": MethodTraining(1e-3, 1e-5),
        "lora": MethodTraining(1e-3, 1e-5),
        "adapter": MethodTraining(1e-2, 1e-5),
        "vpt": MethodTraining(1e-3, 1e-5),
        "ssf": MethodTraining(1e-2, 1e-6),
        "petite": MethodTraining(1e-3, 1e-5),
    },
    "unetr": {
        "full": MethodTraining(1e-3, 1e-5, warmup_fraction=WARMUP_COSINE),
        "layernorm": MethodTraining(1e-3, 1e-5),
        "bitfit": MethodTraining(1e-3, 1e-5),
        "lora": MethodTraining(1e-3, 1e-4),
        "adapter": MethodTraining(1e-2, 1e-4),
        "vpt": MethodTraining(1e-2, 1e-5),
        "ssf": MethodTraining(1e-2, 1e-5),
        "petite": MethodTraining(1e-3, 1e-5),
    },
}

# methods not in the paper train with this column (fullres trains base layers outright, as Full-FT)
TABLE3_COLUMN_OF = {"gvpt": "vpt", "fullres": "full"}

# --- Training settings per job, preset and backbone ------------------------------------------
# Keys are PETITELib.engine.settings.TrainSettings fields; every value can be overridden on the
# command line (--epochs, --lr, --weight-decay, --val-subjects, --val-every, ...).
BATCH_SIZE = 6  # crops per step, every job (paper Sec. 3)
CROPS_PER_SUBJECT = 4  # 64^3 crops drawn per training subject per epoch (half in the head)

# petite pretrain. Learning rates: paper preset as published for long runs (UNETR 1e-4, CvT-GAN
# 2e-4, Zeng et al.); cpu preset 1e-3 with a 5 % warm-up, which learns within a few hundred
# steps (measured: UNETR +2.5 dB over its input after 200 steps of batch 2).
PRETRAINING: Dict[Tuple[str, str], dict] = {
    ("paper", "unetr"): dict(epochs=1000, lr=1e-4, weight_decay=1e-5, warmup_fraction=0.05,
                             val_subjects=15, val_every=10),
    ("paper", "cvtgan"): dict(epochs=1000, lr=2e-4, weight_decay=1e-5, warmup_fraction=0.0,
                              val_subjects=15, val_every=10),
    ("cpu", "unetr"): dict(epochs=60, lr=1e-3, weight_decay=1e-5, warmup_fraction=0.05,
                           val_subjects=4, val_every=5),
    ("cpu", "cvtgan"): dict(epochs=60, lr=1e-3, weight_decay=1e-5, warmup_fraction=0.05,
                            val_subjects=4, val_every=5),
}

# petite finetune: epochs and validation; learning rate, weight decay and warm-up come from the
# method's TABLE3 column. paper: Table 3's "Total epochs"; cpu: 84 steps of batch 6 on ten
# subjects, about 6 minutes on one CPU thread (UNETR).
FINETUNING: Dict[Tuple[str, str], dict] = {
    ("paper", "unetr"): dict(epochs=200, val_subjects=15, val_every=1),
    ("paper", "cvtgan"): dict(epochs=150, val_subjects=15, val_every=1),
    ("cpu", "unetr"): dict(epochs=12, val_subjects=2, val_every=4),
    ("cpu", "cvtgan"): dict(epochs=12, val_subjects=2, val_every=4),
}


@dataclass(frozen=True)
class Deviation:
    """A setting where PETITE departs from the paper or fills in what it leaves open."""

    setting: str
    paper: str
    petite: str
    why: str


DEVIATIONS: Tuple[Deviation, ...] = (
    Deviation("optimizer, CvT-GAN Full-FT", "Adam (Table 3)", "AdamW, weight decay 1e-5",
              "one optimizer for every method and job keeps checkpoints, resume and federated rounds "
              "alike; at weight decay 1e-5 both decays are small beside the updates (AdamW's shrinks "
              "each weight by lr x 1e-5 = 1e-8 of itself per step), so the two should hardly differ "
              "(not measured)"),
    Deviation("optimizer, pre-training", "not stated (CvT-GAN's authors: Adam)", "AdamW",
              "the same reason; pre-training weight decay is 1e-5 as in Table 3"),
    Deviation("warm-up of UNETR Full-FT", "\"WarmupCosine\", length not stated",
              f"linear warm-up over {WARMUP_COSINE:.0%} of the steps", "the paper gives no length"),
    Deviation("LoRA rank of the cpu CvT-GAN", "r = 8 (Tables 1, 6)", "r = 4 in the cpu preset (paper preset: 8)",
              "the cpu generator is 4x narrower, so a rank-8 LoRA would train 4x the paper's share and "
              "PETITE just over 1 % of the parameters; rank 4, stable in the paper's rank study, keeps it under 1 %"),
    Deviation("PETITE of the cpu UNETR", "enc=lora(r=4)+dec=ssf+bitfit (Tables 2, 7)",
              "enc=lora(r=4)+dec=ssf+dec=fullres+bitfit in the cpu preset (paper preset: the paper's)",
              "the cpu UNETR base barely uses its ViT: on a new scanner's validation subjects its layers at "
              "full resolution hold most of Full-FT's gain and the ViT none "
              "(docs/benchmarks/gain-by-layers-unetr-cpu.json), and the paper's mix never trains those layers; "
              "fullres (ours) trains them outright and keeps PETITE under 1 %"),
    Deviation("PETITE of the cpu CvT-GAN", "enc=vpt(tokens=0/8/32)+dec=lora+bitfit (Tables 2, 6)",
              "enc=vpt(tokens=0/0/8)+fullres in the cpu preset (paper preset: the paper's)",
              "on scanner 4's validation subjects the paper's mix recovers under a quarter of Full-FT's gain "
              "over the cpu CvT-GAN base at either rate tried, fullres nearly all of it, and the base's head "
              "or encoder stages in a Full-FT model lose all of it (docs/benchmarks/cvtgan-spec-candidates.json, "
              "gain-by-layers-cvtgan-cpu.json); the mix keeps the paper's encoder prompts (last stage) "
              "and stays under 1 %"),
    Deviation("LoRA alpha", "not stated", "alpha = r (scaling 1)",
              "the usual default; Table 1 gives only the rank"),
    Deviation("pre-training learning rate", "not stated",
              "paper preset: UNETR 1e-4, CvT-GAN 2e-4 (Zeng et al.)", "the published CvT-GAN value; "
              "1e-4 is MONAI's usual UNETR rate"),
)
