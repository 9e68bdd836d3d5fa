"""Several scanner adapters on one base model in memory, switched without reloading the base."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from torch import nn

from ..errors import PetiteError
from .adapter_files import AdapterFile, AdapterMetadata, activate_adapter, check_adapter_fits, read_adapter
from .model import applied_peft, base_weights_sha256, remove_peft


class AdapterSwitcher:
    """Keeps adapter files in memory and puts one at a time onto ``model``.

    Switching removes the active adapter (restoring base tensors that BitFit/LayerNorm or a
    merge changed to their exact base values) and applies the next one; the base weights are
    never reloaded. ``model`` must be a plain base model when the switcher is created.
    """

    def __init__(self, model: nn.Module) -> None:
        if applied_peft(model) is not None:
            raise PetiteError("AdapterSwitcher needs a plain base model (remove its PEFT spec first)")
        self.model = model
        self.base_sha256 = base_weights_sha256(model)
        self._adapters: Dict[str, AdapterFile] = {}
        self.active: Optional[str] = None

    @property
    def names(self) -> List[str]:
        """Names of the adapters added so far, in insertion order."""
        return list(self._adapters)

    def metadata(self, name: str) -> AdapterMetadata:
        """The metadata of adapter ``name``."""
        return self._adapter(name).metadata

    def add(self, path, name: Optional[str] = None) -> str:
        """Read adapter file ``path`` and check that it fits the base (backbone, preset,
        SHA-256, spec, tensors); returns its name (default: the file name without suffix)."""
        adapter = read_adapter(path)
        check_adapter_fits(adapter, self.model, self.base_sha256)
        name = name or Path(path).name.split(".")[0]
        if name in self._adapters:
            raise PetiteError(f"{path}: an adapter named '{name}' was already added")
        previous = self.active
        try:
            activate_adapter(self.model, adapter)  # validates the tensors against the spec
        finally:
            self.activate(previous)
        self._adapters[name] = adapter
        return name

    def activate(self, name: Optional[str]) -> None:
        """Put adapter ``name`` onto the model (None: the plain base model)."""
        if name is None:
            remove_peft(self.model)
        else:
            activate_adapter(self.model, self._adapter(name))
        self.active = name

    def _adapter(self, name: str) -> AdapterFile:
        if name not in self._adapters:
            raise PetiteError(f"no adapter named '{name}' (have: {', '.join(self._adapters) or 'none'})")
        return self._adapters[name]
