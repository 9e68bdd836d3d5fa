"""Loading models for inference and training from PETITE files (:mod:`PETITELib.peft`).

Three kinds of file take part: a base model (``petite pretrain``), an adapter trained on a
base (``petite finetune --peft SPEC``), and a fully fine-tuned model (``petite finetune
--peft full``), which is a base-model file whose training summary names the base it came
from (``finetuned_from``). Wherever an adapter is accepted, a fully fine-tuned model is too.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import PetiteError
from ..peft.adapter_files import ADAPTER_FORMAT
from ..peft.base_files import BASE_FORMAT
from ..peft.safetensors_io import file_format


def resolve_base(base) -> Path:
    """The base-model path to use: ``base`` (a file or a shipped name), else the shipped base
    (checked against the zoo manifest); PetiteError when there is none."""
    from ..zoo import choose_models

    return choose_models(base).base


def load_base(base, device: torch.device):
    """A :class:`PETITELib.peft.BaseModel` (model and discriminator on ``device``, eval mode)."""
    from ..peft import load_base_model

    path = resolve_base(base)
    if file_format(path) != BASE_FORMAT:
        raise PetiteError(f"{path}: is an adapter, not a base model (pass it with --adapter)")
    return load_base_model(path, device=device)


def check_compatible(base, adapter) -> None:
    """Refuse (one-line PetiteError naming ``adapter``) an adapter or fully fine-tuned model that
    was not trained from the weights in base-model file ``base``; reads metadata and weights
    of ``base`` but builds no model."""
    from ..peft import base_model_sha256, read_adapter

    adapter = Path(adapter)
    expected = base_model_sha256(resolve_base(base))
    if file_format(adapter) == BASE_FORMAT:
        from ..peft.base_files import read_base_metadata

        origin = read_base_metadata(adapter)["training"].get("finetuned_from")
    else:
        origin = read_adapter(adapter).metadata.base_sha256
    if origin and origin != expected:
        raise PetiteError(f"{adapter}: was trained on base weights {origin[:12]}, not on {base} "
                          f"({expected[:12]}); use the base it was trained on")


def load_for_inference(base, adapter, device: torch.device) -> nn.Module:
    """The generator for ``base`` (+ ``adapter``), on ``device``, eval mode, LoRA/SSF merged.

    ``adapter`` may be an adapter file (checked against the base's SHA-256: an adapter for
    another base is refused with a one-line PetiteError) or a fully fine-tuned model file
    (checked against the base it was fine-tuned from when ``base`` is given).
    """
    from ..peft import load_adapter, merge_peft

    if adapter is None or str(adapter) == "":
        return load_base(base, device).model
    adapter = Path(adapter)
    if file_format(adapter) == BASE_FORMAT:
        if base is not None:
            check_compatible(base, adapter)
        return load_base(adapter, device).model
    if file_format(adapter) != ADAPTER_FORMAT:
        raise PetiteError(f"{adapter}: not a PETITE adapter file")
    model = load_base(base, device).model
    load_adapter(model, adapter)
    merge_peft(model)
    return model.to(device).eval()


def describe_weights(path) -> dict:
    """Metadata worth recording about a model file: its format and, for adapters, the spec."""
    from ..peft import read_adapter

    path = Path(path)
    kind = file_format(path)
    if kind == ADAPTER_FORMAT:
        meta = read_adapter(path).metadata
        return {"file": str(path), "kind": "adapter", "spec": meta.spec, "training": meta.training}
    from ..peft.base_files import read_base_metadata

    meta = read_base_metadata(path)
    kind = "full" if meta["training"].get("finetuned_from") else "base"
    return {"file": str(path), "kind": kind, "spec": "full" if kind == "full" else "",
            "training": meta.get("training", {})}
