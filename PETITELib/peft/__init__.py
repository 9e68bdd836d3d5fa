"""Parameter-efficient fine-tuning for PETITE backbones: one registry of the paper's six methods
(layernorm, bitfit, lora, adapter, ssf, vpt), our gated VPT (gvpt) and full-resolution tuning
(fullres), Mix-PEFT specs, the ``petite`` preset, ``full`` fine-tuning, merging, adapter and
base-model files, and adapter switching.

Typical use::

    model = build_backbone("unetr", "cpu")
    spec = apply_peft(model, "petite")              # enc=lora(alpha=4,r=4)+dec=ssf+bitfit
    optimizer = AdamW(trainable_parameters(model).values(),
                      lr=default_hyperparameters("unetr", spec).learning_rate)
    ...
    save_adapter("scanner4.safetensors", model, scanner={"name": "Philips"}, training={...})
"""
from .adapter_files import (AdapterFile, AdapterMetadata, activate_adapter, check_adapter_fits, load_adapter,
                            read_adapter, save_adapter)
from .base_files import BaseModel, base_model_sha256, load_base_model, save_base_model
from ..hyperparameters import PRESETS, MethodTraining
from .catalogue import CatalogueEntry, default_hyperparameters, method_catalogue
from .layers import make_frozen_layers_lean
from .model import (AppliedPeft, ParameterCount, applied_peft, apply_peft, base_state_dict, base_weights_sha256,
                    count_parameters, merge_peft, peft_state_dict, remove_peft, tensors_sha256,
                    trainable_parameters, unmerge_peft)
from .registry import METHODS, PeftMethod
from .spec import PeftSpec, PeftTerm, parse_spec
from .switcher import AdapterSwitcher

__all__ = [
    "AdapterFile", "AdapterMetadata", "AdapterSwitcher", "AppliedPeft", "BaseModel", "CatalogueEntry",
    "METHODS", "MethodTraining", "PRESETS", "ParameterCount", "PeftMethod", "PeftSpec", "PeftTerm",
    "activate_adapter", "applied_peft", "apply_peft", "base_model_sha256", "base_state_dict",
    "base_weights_sha256", "check_adapter_fits", "count_parameters", "default_hyperparameters",
    "load_adapter", "load_base_model", "make_frozen_layers_lean", "merge_peft", "method_catalogue", "parse_spec", "peft_state_dict",
    "read_adapter", "remove_peft", "save_adapter", "save_base_model", "tensors_sha256",
    "trainable_parameters", "unmerge_peft",
]
