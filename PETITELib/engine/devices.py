"""Choosing the torch device a job runs on: ``auto`` prefers CUDA, then Apple MPS, then the CPU."""
from __future__ import annotations

import torch

from ..errors import PetiteError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(name: str = "auto") -> torch.device:
    """Resolve a device name (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``) to a torch device.

    Raises PetiteError when the named device is unknown or not available on this machine.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PetiteError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PetiteError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    if name == "mps":
        if not _mps_available():
            raise PetiteError("--device mps: Apple MPS is not available on this machine (use --device cpu or auto)")
        return torch.device("mps")
    raise PetiteError(f"--device {name}: unknown device (choose one of {', '.join(DEVICE_CHOICES)})")


def autocast_context(device: torch.device):
    """Mixed-precision context for inference: bfloat16/float16 autocast on CUDA, a no-op elsewhere.

    Inference on CPU and MPS stays in float32 (CPU autocast is slower for 3D convs, MPS
    autocast is not reliable for every op used here).
    """
    import contextlib

    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def training_autocast(device: torch.device):
    """Mixed-precision context for training steps: bfloat16 autocast on CUDA devices that support
    it, a no-op elsewhere (no float16 fallback: it would need loss scaling). Weights, gradients
    and optimizer state stay float32; only the forward computation runs in bfloat16."""
    import contextlib

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def training_precision(device: torch.device) -> str:
    """What :func:`training_autocast` does on ``device``: "bfloat16-autocast" or "float32"."""
    return "bfloat16-autocast" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def describe_device(device: torch.device) -> str:
    """Human-readable device name recorded in metadata, e.g. ``cuda (NVIDIA H100)`` or ``cpu (2 threads)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device.type
