"""File names of fine-tuned models in a benchmark or model-zoo work folder.

``petite bench``, ``petite zoo rebuild`` and ``petite zoo gap`` name a fine-tuned model by what
made it, so that each reuses the others' finished runs in a shared work folder and a run at
another learning rate never replaces one it does not match. Plain string functions: this module
imports nothing heavy.
"""
from __future__ import annotations


def finetuned_model_file(backbone: str, preset: str, scanner: int, method: str, lr: float) -> str:
    """``{backbone}-{preset}-scanner{scanner}-{method}-lr{lr}.safetensors``: the model of
    ``method`` fine-tuned for target ``scanner`` at peak learning rate ``lr``."""
    return f"{backbone}-{preset}-scanner{scanner}-{method}-lr{lr:g}.safetensors"

