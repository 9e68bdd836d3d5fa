"""The PEFT spec grammar: which method acts on which part of a backbone, with what arguments.

    spec   := "full" | preset | term ("+" term)*
    term   := [part "="] method ["(" [arg ("," arg)*] ")"]
    part   := "enc" | "dec"                    (also "encoder", "decoder")
    method := "layernorm" | "bitfit" | "fullres" | "lora" | "adapter" | "ssf" | "vpt" | "gvpt"
    arg    := name "=" value                   value: 4 | 0.5 | 0/8/32 (one count per stage)
    preset := "petite"                         (the paper's best mix for the backbone; the
                                                cpu UNETR's adds dec=fullres, see MODEL_PRESET_SPECS)

A term without a part applies to every part where the method has something to act on.
Omitted arguments take the paper's value for the backbone and part, or the model preset's where
it departs (:func:`PETITELib.hyperparameters.method_arguments`).
Examples: ``enc=lora(r=4)+dec=ssf+bitfit``, ``enc=vpt(tokens=0/8/32)+dec=lora+bitfit``,
``lora(r=8,alpha=16)``, ``full``. Whitespace is ignored.

The canonical form (stored in adapter files) spells every argument, sorts arguments by name,
lists encoder terms, then decoder terms, then terms that act on both parts with equal
arguments (written without a part), each group in registry order. Parsing a canonical string
gives back the same spec.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Dict, List, Tuple

from ..backbones import BACKBONES
from ..backbones.base import PART_NAMES
from ..errors import PetiteError
from ..hyperparameters import PRESETS, method_arguments, preset_spec
from .configs import VPTConfig, format_arguments
from .registry import FULL_FINE_TUNING, METHODS, PART_ALIASES, PART_SHORT

_TERM = re.compile(r"^(?:(?P<part>[a-z_]+)=)?(?P<method>[a-z_]+)(?:\((?P<args>[^()]*)\))?$")
_INT = re.compile(r"^\d+$")
_INT_LIST = re.compile(r"^\d+(?:/\d+)+$")


@dataclass(frozen=True)
class PeftTerm:
    """One method on one part: ``method`` (registry name), ``part`` ("encoder"/"decoder"), ``config``."""

    method: str
    part: str
    config: object


@dataclass(frozen=True)
class PeftSpec:
    """A parsed spec for ``backbone``: full fine-tuning, or terms in application order."""

    backbone: str
    terms: Tuple[PeftTerm, ...]
    full: bool = False

    @property
    def canonical(self) -> str:
        """The canonical spec string (see the module docstring)."""
        if self.full:
            return FULL_FINE_TUNING
        by_method: Dict[str, Dict[str, object]] = {}
        for term in self.terms:
            by_method.setdefault(term.method, {})[term.part] = term.config
        groups: Dict[str, List[str]] = {"encoder": [], "decoder": [], "both": []}
        for method, configs in by_method.items():
            if set(configs) == set(PART_NAMES) and len(set(configs.values())) == 1:
                groups["both"].append(method + format_arguments(configs["encoder"]))
                continue
            for part, config in configs.items():
                groups[part].append(f"{PART_SHORT[part]}={method}{format_arguments(config)}")
        return "+".join(groups["encoder"] + groups["decoder"] + groups["both"])

    @property
    def methods(self) -> Tuple[str, ...]:
        """The distinct methods of the spec, in registry order."""
        return tuple(dict.fromkeys(term.method for term in self.terms))

    def __str__(self) -> str:
        return self.canonical


def _split_terms(text: str) -> List[str]:
    terms, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "+" and depth == 0:
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _parse_value(text: str, where: str):
    if _INT.match(text):
        return int(text)
    if _INT_LIST.match(text):
        return tuple(int(v) for v in text.split("/"))
    try:
        value = float(text)
    except ValueError:
        raise PetiteError(f"{where}: bad value '{text}' (expected a number or counts like 0/8/32)") from None
    if not math.isfinite(value):
        raise PetiteError(f"{where}: value '{text}' is not a finite number")
    return value


def _parse_arguments(text: str, where: str) -> Dict[str, object]:
    arguments: Dict[str, object] = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise PetiteError(f"{where}: bad argument '{item}' (expected name=value)")
        if key in arguments:
            raise PetiteError(f"{where}: argument '{key}' given twice")
        arguments[key] = _parse_value(value, where)
    return arguments


def _make_config(backbone: str, method: str, part: str, defaults: dict, given: Dict[str, object], where: str):
    config_type = METHODS[method].config_type
    names = [f.name for f in fields(config_type)]
    unknown = sorted(set(given) - set(names))
    if unknown:
        allowed = ", ".join(names) if names else "none"
        raise PetiteError(f"{where}: {method} has no argument '{unknown[0]}' (arguments: {allowed})")
    values = {**defaults, **given}
    if method == "lora":
        values.setdefault("alpha", values["r"])
        if isinstance(values["alpha"], int):
            values["alpha"] = float(values["alpha"])
    if config_type is VPTConfig:
        stages = len(defaults["tokens"])
        tokens = values["tokens"]
        tokens = (tokens,) * stages if isinstance(tokens, int) else tokens
        if not isinstance(tokens, tuple) or len(tokens) != stages:
            example = "one token count" + (f" or {stages} like {'/'.join(['8'] * stages)}" if stages > 1 else "")
            raise PetiteError(f"{where}: {backbone}'s {part} has {stages} prompt stage(s); give {example}")
        values["tokens"] = tokens
    try:
        return config_type(**values)
    except PetiteError as exc:
        raise PetiteError(f"{where}: {exc}") from None


def _parse_term(text: str, backbone: str, preset, spec_text: str) -> List[PeftTerm]:
    where = f"PEFT spec '{spec_text}'"
    match = _TERM.match(text)
    if not text or not match:
        raise PetiteError(f"{where}: cannot read term '{text}' (expected e.g. enc=lora(r=4))")
    method, part_alias = match["method"], match["part"]
    if method not in METHODS:
        raise PetiteError(f"{where}: unknown PEFT method '{method}' (choose from {', '.join(METHODS)})")
    defaults = {part: method_arguments(backbone, method, part, preset) for part in PART_NAMES}
    if part_alias is None:
        parts = [part for part in PART_NAMES if defaults[part] is not None]
    elif part_alias not in PART_ALIASES:
        raise PetiteError(f"{where}: unknown part '{part_alias}' (use enc or dec)")
    else:
        parts = [PART_ALIASES[part_alias]]
        if defaults[parts[0]] is None:
            raise PetiteError(f"{where}: {backbone}'s {parts[0]} has no layers {method} can act on")
    given = _parse_arguments(match["args"] or "", where)
    return [PeftTerm(method, part, _make_config(backbone, method, part, defaults[part], given, where)) for part in parts]


def parse_spec(spec, backbone: str, preset=None) -> PeftSpec:
    """Parse spec text (or pass through a :class:`PeftSpec`) for ``backbone``; omitted
    arguments take the values for model ``preset`` ("paper", "cpu"; None: the paper's).

    Raises :class:`PetiteError` (one line) for an unknown backbone, method, part or argument,
    a bad value (e.g. rank 0), a part the method cannot act on, a method given twice for
    the same part, or both prompt methods (vpt, gvpt) on one part.
    """
    if backbone not in BACKBONES:
        raise PetiteError(f"unknown backbone '{backbone}' (choose from {', '.join(BACKBONES)})")
    if isinstance(spec, PeftSpec):
        if spec.backbone != backbone:
            raise PetiteError(f"PEFT spec '{spec}' is for {spec.backbone}, not {backbone}")
        return spec
    text = "".join(str(spec).split()).lower()
    if text == FULL_FINE_TUNING:
        return PeftSpec(backbone, (), full=True)
    source = preset_spec(text, backbone, preset) if text in PRESETS else text
    terms: List[PeftTerm] = []
    for piece in _split_terms(source):
        terms.extend(_parse_term(piece, backbone, preset, str(spec)))
    seen, prompted = set(), {}
    for term in terms:
        if (term.method, term.part) in seen:
            raise PetiteError(f"PEFT spec '{spec}' applies {term.method} to the {term.part} twice")
        seen.add((term.method, term.part))
        if isinstance(term.config, VPTConfig):
            if term.part in prompted:
                raise PetiteError(f"PEFT spec '{spec}' gives the {term.part} prompts twice "
                                  f"({prompted[term.part]} and {term.method}); choose one")
            prompted[term.part] = term.method
    order = {name: index for index, name in enumerate(METHODS)}
    terms.sort(key=lambda t: (order[t.method], PART_NAMES.index(t.part)))
    return PeftSpec(backbone, tuple(terms))
