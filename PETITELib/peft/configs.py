"""Configuration dataclasses of the PEFT methods (one per method; vpt and gvpt share one),
validated on creation.

Each config is frozen and hashable; :func:`format_arguments` writes it back in the spec grammar.
Validation errors are :class:`PetiteError` with a one-line message.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Tuple

from ..errors import PetiteError


@dataclass(frozen=True)
class NoArguments:
    """Config of a method without hyperparameters (layernorm, bitfit, ssf)."""


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA: rank ``r`` (>= 1) and ``alpha`` (> 0); the update is scaled by alpha / r."""

    r: int
    alpha: float

    def __post_init__(self) -> None:
        if not isinstance(self.r, int) or self.r < 1:
            raise PetiteError(f"lora: rank r must be a positive integer, got {self.r}")
        if not self.alpha > 0:
            raise PetiteError(f"lora: alpha must be positive, got {self.alpha}")


@dataclass(frozen=True)
class AdapterConfig:
    """Bottleneck adapter: reduction factor ``rf`` (>= 1); bottleneck width = max(1, C // rf)."""

    rf: int

    def __post_init__(self) -> None:
        if not isinstance(self.rf, int) or self.rf < 1:
            raise PetiteError(f"adapter: reduction factor rf must be a positive integer, got {self.rf}")


@dataclass(frozen=True)
class VPTConfig:
    """Shallow VPT: prompt ``tokens`` per prompt stage of the part (a tuple, one count each)."""

    tokens: Tuple[int, ...]

    def __post_init__(self) -> None:
        if any(not isinstance(n, int) or n < 0 for n in self.tokens) or not any(self.tokens):
            raise PetiteError(f"vpt: tokens must be non-negative integers, at least one positive, "
                              f"got {'/'.join(map(str, self.tokens))}")


def format_value(value) -> str:
    """A config value in spec syntax: ints as-is, integral floats without '.0', tuples as a/b/c."""
    if isinstance(value, tuple):
        return "/".join(format_value(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def format_arguments(config) -> str:
    """``"(k1=v1,k2=v2)"`` with keys sorted, or ``""`` for a config without fields."""
    items = sorted((f.name, getattr(config, f.name)) for f in fields(config))
    return "(" + ",".join(f"{k}={format_value(v)}" for k, v in items) + ")" if items else ""
