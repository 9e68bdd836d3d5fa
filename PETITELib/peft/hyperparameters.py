"""Per-method training defaults from the paper's supplementary Table 3.

The engine looks them up with :func:`default_hyperparameters`. A spec made of one method
(on any parts) gets that method's column; ``full`` the Full-FT column; any mix (including a
method + BitFit) the PETITE column, which is what the paper used for its Mix-PEFT runs.
``gvpt`` (our gated VPT) takes VPT's column.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from .spec import PeftSpec, parse_spec


@dataclass(frozen=True)
class TrainingDefaults:
    """learning_rate, weight_decay; optimizer ("adam" or "adamw"); schedule ("cosine" = cosine
    annealing, "warmup-cosine" = linear warm-up then cosine); epochs (the paper's count)."""

    learning_rate: float
    weight_decay: float
    optimizer: str
    schedule: str
    epochs: int


def _column(lr: float, wd: float, optimizer: str = "adamw", schedule: str = "cosine", epochs: int = 150):
    return TrainingDefaults(lr, wd, optimizer, schedule, epochs)


TABLE3: Dict[str, Dict[str, TrainingDefaults]] = {
    "cvtgan": {
        "full": _column(1e-3, 1e-5, optimizer="adam"),
        "layernorm": _column(1e-3, 1e-5),
        "bitfit": _column(1e-3, 1e-5),
        "lora": _column(1e-3, 1e-5),
        "adapter": _column(1e-2, 1e-5),
        "vpt": _column(1e-3, 1e-5),
        "gvpt": _column(1e-3, 1e-5),
        "ssf": _column(1e-2, 1e-6),
        "petite": _column(1e-3, 1e-5),
    },
    "unetr": {
        "full": _column(1e-3, 1e-5, schedule="warmup-cosine", epochs=200),
        "layernorm": _column(1e-3, 1e-5, epochs=200),
        "bitfit": _column(1e-3, 1e-5, epochs=200),
        "lora": _column(1e-3, 1e-4, epochs=200),
        "adapter": _column(1e-2, 1e-4, epochs=200),
        "vpt": _column(1e-2, 1e-5, epochs=200),
        "gvpt": _column(1e-2, 1e-5, epochs=200),
        "ssf": _column(1e-2, 1e-5, epochs=200),
        "petite": _column(1e-3, 1e-5, epochs=200),
    },
}


def default_hyperparameters(backbone: str, spec) -> TrainingDefaults:
    """Table 3's training defaults for ``spec`` (text or :class:`PeftSpec`) on ``backbone``."""
    parsed: PeftSpec = parse_spec(spec, backbone)
    if parsed.full:
        return TABLE3[backbone]["full"]
    methods = parsed.methods
    return TABLE3[backbone][methods[0] if len(methods) == 1 else "petite"]
