"""Optional parts of PETITE and the pip extras that install them.

Reconstruction, training and evaluation need only the core dependencies (the Slicer module
installs nothing more). Two jobs need more:

- ``sim``: the simulator's MNI152 anatomy comes from nilearn (``petite simulate``, ``petite demo``,
  ``petite bench``, ``petite zoo rebuild``); the simulator also draws a montage, so the extra
  brings matplotlib too;
- ``figures``: PNG figures are drawn with matplotlib (the comparison figure of ``petite
  reconstruct --reference``, benchmark and regional plots, the simulator's montage).

:func:`require` turns a missing package into one line naming the extra, before any work starts
where a command knows it will need it, and at the import otherwise.
"""
from __future__ import annotations

import importlib.util
import sys

from .errors import PetiteError

# extra -> the modules it provides (as imported), in pyproject.toml's [project.optional-dependencies]
EXTRAS = {"sim": ("nilearn", "matplotlib"), "figures": ("matplotlib",)}


def installed(module: str) -> bool:
    """Whether ``module`` (a top-level name) can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def require(extra: str, purpose: str) -> None:
    """Raise a one-line PetiteError when a module of ``extra`` is missing.

    purpose: what needs it, naming the command, option or file, e.g. ``"petite simulate"`` or
    ``"out.png: the comparison figure"``.
    """
    missing = [module for module in EXTRAS[extra] if not installed(module)]
    if missing:
        raise PetiteError(f"{purpose} needs {' and '.join(missing)}, which is not installed: "
                          f'pip install "petite[{extra}]"')
