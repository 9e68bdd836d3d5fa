"""The model zoo: a trained base model and per-scanner adapters shipped in ``Resources/Models/``.

:mod:`.manifest` reads and checks the shipped files (SHA-256, size); :mod:`.selection`
turns ``--base``/``--adapter`` values (a file, a shipped name, ``auto``) into files, and
lists a user's own models folder (:func:`.selection.user_models`). The zoo imports nothing
from the engine; the engine's :mod:`~PETITELib.engine.zoo_rebuild` reproduces the zoo from the
commands its manifest records.
"""
from .manifest import MANIFEST_NAME, Manifest, ZooEntry, load_manifest, verify_entry, zoo_dir
from .selection import ModelChoice, available_adapters, choose_models, user_models

__all__ = ["MANIFEST_NAME", "Manifest", "ZooEntry", "load_manifest", "verify_entry", "zoo_dir",
           "ModelChoice", "available_adapters", "choose_models", "user_models"]
