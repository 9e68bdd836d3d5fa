"""Per-epoch training checkpoints: safetensors for tensors plus a JSON state file, no pickle.

A checkpoint folder holds ``epoch-NNNN.safetensors`` (model tensors, optimizer moments,
RNG states) and ``state.json`` (epoch, scheduler and optimizer hyper-parameters, best
epoch, history, job configuration, and the SHA-256 of the tensor file). The tensor file is
written first, then ``state.json`` is replaced atomically: that rename is the commit point,
so a crash at any moment leaves the previous complete checkpoint readable.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import numpy as np
import torch

from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes, file_sha256

STATE_FILE = "state.json"
FORMAT_VERSION = 1


def checkpoint_folder(output: Path) -> Path:
    """The checkpoint folder that belongs to a training output file: ``OUT.ckpt/`` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".ckpt")


def save_checkpoint(folder: Path, epoch: int, tensors: Dict[str, torch.Tensor], state: dict) -> None:
    """Write the checkpoint of a completed ``epoch`` atomically (see the module docstring)."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}.safetensors"
    payload = {key: value.detach().to("cpu").contiguous().clone() for key, value in tensors.items()}
    atomic_write_bytes(folder / name, save(payload), overwrite=True)
    record = dict(state, format_version=FORMAT_VERSION, epoch=epoch, tensors_file=name,
                  tensors_sha256=file_sha256(folder / name))
    atomic_write_bytes(folder / STATE_FILE, json.dumps(record, indent=1, sort_keys=True).encode(),
                       overwrite=True)
    for old in folder.glob("epoch-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_checkpoint(folder: Path) -> Optional[Tuple[Dict[str, torch.Tensor], dict]]:
    """Read the last committed checkpoint of ``folder``: (tensors, state), or None if there is none.

    Raises PetiteError (one line) when the state is not a JSON object of this format with a
    plain tensor file name and a SHA-256, names a missing or altered tensor file, or the tensors
    hold NaN/Inf values.
    """
    from safetensors.torch import load

    from ..peft.safetensors_io import SHA256, check_fields, check_finite

    folder = Path(folder)
    state_path = folder / STATE_FILE
    if not state_path.exists():
        return None
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError) as exc:
        raise PetiteError(f"{state_path}: unreadable checkpoint state ({exc})") from None
    if not isinstance(state, dict):
        raise PetiteError(f"{state_path}: checkpoint state is not a JSON object (damaged file)")
    if state.get("format_version") != FORMAT_VERSION or isinstance(state.get("format_version"), bool):
        raise PetiteError(f"{state_path}: unsupported checkpoint format {state.get('format_version')}")
    check_fields(state_path, state, {"tensors_file": str, "tensors_sha256": SHA256, "epoch": int})
    if Path(state["tensors_file"]).name != state["tensors_file"]:
        raise PetiteError(f"{state_path}: tensor file '{state['tensors_file']}' is not a file of this folder")
    tensor_path = folder / state["tensors_file"]
    try:  # read once: the bytes hashed are the bytes loaded, and no file stays mapped (Windows)
        data = tensor_path.read_bytes()
    except OSError:
        data = None
    if data is None or hashlib.sha256(data).hexdigest() != state["tensors_sha256"]:
        raise PetiteError(f"{tensor_path}: checkpoint tensors missing or altered (SHA-256 mismatch)")
    try:
        tensors = load(data)
    except Exception as exc:
        raise PetiteError(f"{tensor_path}: cannot read checkpoint tensors ({type(exc).__name__})") from None
    check_finite(tensor_path, tensors)
    return tensors, state


# --- RNG state as tensors + JSON -------------------------------------------------------------

def rng_state() -> Tuple[Dict[str, torch.Tensor], dict]:
    """Snapshot of the torch (CPU and CUDA), numpy and Python RNGs as tensors plus JSON scalars."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = cuda_state
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["rng.python"] = torch.tensor(internal, dtype=torch.int64)
    scalars = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
               "python": [version, gauss_next]}
    return tensors, scalars


def restore_rng_state(tensors: Dict[str, torch.Tensor], scalars: dict) -> None:
    """Restore the RNGs saved by :func:`rng_state`."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[key] for key in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss_next = scalars["python"]
    random.setstate((version, tuple(int(v) for v in tensors["rng.python"].tolist()), gauss_next))


# --- optimizer state as tensors + JSON -------------------------------------------------------

def optimizer_state(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                    prefix: str = "optim") -> Tuple[Dict[str, torch.Tensor], dict]:
    """Optimizer moments as tensors keyed by parameter name, hyper-parameters as JSON.

    ``names`` maps ``id(parameter)`` to its name in the model, so a checkpoint stays valid
    when parameters are re-created in the same order by a resumed job.
    """
    full = optimizer.state_dict()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    tensors = {}
    for index, per_param in full["state"].items():
        name = names[id(params[index])]
        for key, value in per_param.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{name}.{key}"] = value
    groups = [{k: v for k, v in group.items() if k != "params"} for group in full["param_groups"]]
    for group, full_group in zip(groups, full["param_groups"]):
        group["param_names"] = [names[id(params[i])] for i in full_group["params"]]
    return tensors, {"param_groups": groups}


def restore_optimizer_state(optimizer: torch.optim.Optimizer, names: Dict[int, str],
                            tensors: Dict[str, torch.Tensor], saved: dict, prefix: str = "optim") -> None:
    """Load what :func:`optimizer_state` saved into a freshly built ``optimizer`` of the same job."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    current = optimizer.state_dict()
    state = {}
    for index, param in enumerate(params):
        name = names[id(param)]
        marker = f"{prefix}.{name}."
        entry = {key[len(marker):]: value for key, value in tensors.items() if key.startswith(marker)}
        if entry:
            state[index] = entry
    groups = []
    for saved_group, group in zip(saved["param_groups"], current["param_groups"]):
        if saved_group["param_names"] != [names[id(params[i])] for i in group["params"]]:
            raise PetiteError("checkpoint: optimizer parameters differ from this job's (use a fresh output)")
        groups.append(dict({k: v for k, v in saved_group.items() if k != "param_names"},
                           params=group["params"]))
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def tensors_with_prefix(tensors: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The entries of ``tensors`` whose key starts with ``prefix + '.'``, with that prefix removed."""
    marker = prefix + "."
    return {key[len(marker):]: value for key, value in tensors.items() if key.startswith(marker)}


def prefixed(tensors: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """``tensors`` with every key prefixed by ``prefix + '.'``."""
    return {f"{prefix}.{key}": value for key, value in tensors.items()}


def names_by_id(named: Iterable[Tuple[str, torch.nn.Parameter]]) -> Dict[int, str]:
    """``{id(parameter): name}`` for ``model.named_parameters()``-style pairs."""
    return {id(param): name for name, param in named}
