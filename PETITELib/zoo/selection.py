"""Which base model and adapter files a reconstruction uses: ``--base``/``--adapter`` resolved.

Each value may be a file path, the name of a shipped model (``base``, ``scanner4``...), or
for the adapter ``auto`` (the shipped adapter whose recorded scanner matches the volume's
matrix and voxel spacing, see :mod:`PETITELib.scanner_matching`) or ``none``. No base means
the shipped base. Shipped files are checked against the manifest's SHA-256 before use.

A user's own models folder (the Slicer module's ``~/.PETITE``: ``base/*.safetensors`` and
``adapters/*.safetensors``, see :func:`user_models`) may be given too: its models are then
chosen by name before shipped ones of the same name, its only base model replaces the shipped
one as the default, and ``auto`` considers its adapters (those trained on the base in use)
before the shipped ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from ..errors import PetiteError
from .manifest import Manifest, ZooEntry, load_manifest, shipped_entry_for, verify_entry

AUTO = "auto"
NONE = "none"
USER_BASE_FOLDER = "base"  # in a user's models folder: base models (its only one is the default)
USER_ADAPTER_FOLDER = "adapters"  # in a user's models folder: adapters and fully fine-tuned models
MODEL_SUFFIX = ".safetensors"
SIMULATED_NOTE = "a shipped adapter, trained on simulated scans only"


@dataclass(frozen=True)
class ModelChoice:
    """The files to use: ``base`` (path), ``adapter`` (path or None), and ``note``, one line
    saying what was chosen (e.g. which adapter ``auto`` picked), empty when nothing was chosen;
    ``adapter_name`` (the chosen adapter's name, "" for none) and ``adapter_shipped`` (True when it
    comes from the shipped zoo, whose models were trained on simulated scans)."""

    base: Path
    adapter: Optional[Path]
    note: str = ""
    adapter_name: str = ""
    adapter_shipped: bool = False


def user_models(folder) -> List[ZooEntry]:
    """The models a user keeps in ``folder`` (e.g. ``~/.PETITE``): ``base/*.safetensors`` (kind
    "base") then ``adapters/*.safetensors`` (kind "adapter": adapters and fully fine-tuned
    models), each sorted by name, as :class:`ZooEntry` named after the file without its suffix,
    with ``sha256`` "" (user files have no manifest) and a record of ``source`` "user", ``spec``
    ("full" for a fully fine-tuned model), ``scanner`` (the target scanner an adapter's metadata
    records; a fully fine-tuned model records only its cohort's ``scanner_name``), ``base_sha256`` (the base weights it belongs to) and ``problem`` (one line, set
    when the file cannot be read; then the other fields are empty). A missing folder has no
    models. Reads file metadata only: no weights are loaded and nothing is hashed."""
    folder = Path(folder)
    entries = []
    for kind, sub in (("base", USER_BASE_FOLDER), ("adapter", USER_ADAPTER_FOLDER)):
        for path in sorted((folder / sub).glob("*" + MODEL_SUFFIX)):
            record = {"source": "user", "spec": "", "scanner": {}, "base_sha256": "", "problem": ""}
            try:
                record.update(_user_model_record(path, kind))
            except PetiteError as exc:
                record["problem"] = str(exc)
            entries.append(ZooEntry(path.name[:-len(MODEL_SUFFIX)], kind, path, "", path.stat().st_size, record))
    return entries


def _user_model_record(path: Path, kind: str) -> dict:
    """Spec, scanner and base SHA-256 from a user model file's metadata (PetiteError if unreadable)."""
    from ..peft.adapter_files import ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION
    from ..peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
    from ..peft.safetensors_io import file_format, read_metadata

    found = file_format(path)
    if found == ADAPTER_FORMAT and kind == "adapter":
        metadata = read_metadata(path, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION)
        return {"spec": str(metadata.get("spec", "")), "scanner": dict(metadata.get("scanner") or {}),
                "base_sha256": str(metadata.get("base_sha256", ""))}
    if found == BASE_FORMAT:
        metadata = read_metadata(path, BASE_FORMAT, BASE_FORMAT_VERSION)
        training = dict(metadata.get("training") or {})
        if kind == "base":
            return {"base_sha256": str(metadata.get("base_sha256", ""))}
        if training.get("finetuned_from"):  # a fully fine-tuned model: a base file made from another base
            return {"spec": "full", "scanner_name": str(training.get("scanner") or ""),
                    "base_sha256": str(training["finetuned_from"])}
    where = USER_BASE_FOLDER if kind == "base" else USER_ADAPTER_FOLDER
    raise PetiteError(f"{path}: not a PETITE {'base model' if kind == 'base' else 'adapter'} file "
                      f"(only those belong in {where}/)")


def _user_entries(user, kind: str) -> List[ZooEntry]:
    return [] if user is None else [e for e in user_models(user) if e.kind == kind]


def _usable(entry: ZooEntry) -> ZooEntry:
    if entry.record.get("problem"):
        raise PetiteError(str(entry.record["problem"]))
    return entry


def _checked_path(value, verify: bool = True) -> Path:
    path = Path(value)
    entry = shipped_entry_for(path) if verify else None
    return verify_entry(entry) if entry is not None else path


def _shipped(manifest: Optional[Manifest], name: str, kind: str, option: str, verify: bool = True,
             user=None) -> ZooEntry:
    entry = manifest.entry(name) if manifest is not None else None
    if entry is None or entry.kind != kind:
        names = [e.name for e in manifest.entries if e.kind == kind] if manifest is not None else []
        where = f"shipped {kind}s: {', '.join(names)}" if names else "no model zoo is installed"
        mine = f", nor in {Path(user) / (USER_BASE_FOLDER if kind == 'base' else USER_ADAPTER_FOLDER)}" \
            if user is not None else ""
        raise PetiteError(f"{option} {name}: no such file{mine}, and not a shipped {kind} name ({where})")
    if verify:
        verify_entry(entry)
    return entry


def _manifest_or_none(folder) -> Optional[Manifest]:
    try:
        return load_manifest(folder)
    except PetiteError:
        return None


def _is_file_value(value) -> bool:
    text = str(value)
    return Path(text).exists() or text.endswith(".safetensors") or "/" in text or "\\" in text


def choose_models(base=None, adapter=None, *, shape: Optional[Sequence[int]] = None,
                  spacing: Optional[Sequence[float]] = None, dicom: Optional[Mapping[str, str]] = None,
                  zoo=None, user=None, verify: bool = True) -> ModelChoice:
    """Resolve ``base`` and ``adapter`` (see the module docstring) for a volume of ``shape``
    (x, y, z voxels) and ``spacing`` (x, y, z mm), needed only for ``auto``; ``zoo``: the zoo
    folder (default :func:`PETITELib.zoo.zoo_dir`); ``user``: a user's models folder (see
    :func:`user_models`; None: none). With ``verify`` False shipped files are not hashed (for a
    program that only shows the choice and lets the process that uses the files check them).
    PetiteError (one line) for an unknown name, a missing zoo when one is needed, an unreadable
    user model, several user base models and none chosen, or a corrupted shipped file.
    """
    manifest = _manifest_or_none(zoo) if zoo is not None else _manifest_or_none(None)
    if base is None or str(base) == "":
        base_path, base_entry = _default_base(manifest, user, verify)
    elif _is_file_value(base):
        base_path = _checked_path(base, verify)
        base_entry = shipped_entry_for(base_path)
    else:
        mine = next((e for e in _user_entries(user, "base") if e.name == str(base)), None)
        base_entry = None if mine is not None else _shipped(manifest, str(base), "base", "--base", verify, user)
        base_path = _usable(mine).path if mine is not None else base_entry.path

    if adapter is None or str(adapter) == "" or str(adapter).lower() == NONE:
        return ModelChoice(base_path, None)
    if str(adapter).lower() == AUTO:
        return _auto_adapter(manifest, base_path, base_entry, shape, spacing, dicom, user, verify)
    if _is_file_value(adapter):
        path = _checked_path(adapter, verify)
        return ModelChoice(base_path, path, adapter_name=path.name.split(".")[0],
                           adapter_shipped=shipped_entry_for(path) is not None)
    mine = next((e for e in _user_entries(user, "adapter") if e.name == str(adapter)), None)
    if mine is not None:
        return ModelChoice(base_path, _usable(mine).path, adapter_name=mine.name)
    entry = _shipped(manifest, str(adapter), "adapter", "--adapter", verify, user)
    return ModelChoice(base_path, entry.path, adapter_name=entry.name, adapter_shipped=True)


def available_adapters(base=None, *, zoo=None, user=None) -> List[ZooEntry]:
    """The adapters on offer with base model ``base`` (a file or name as :func:`choose_models`
    takes it; None: the default base): every adapter in the user's folder ``user`` (see
    :func:`user_models`; unreadable ones too, with their ``problem``), then the shipped adapters
    made for that base when it is one of the shipped bases (UNETR's or CvT-GAN's), less those a
    user adapter of the same name hides. Reads metadata and the manifest only (no hashing); []
    for the shipped part when the base cannot be resolved."""
    mine = _user_entries(user, "adapter")
    manifest = _manifest_or_none(zoo)
    if manifest is None or manifest.base is None:
        return mine
    try:
        in_use = Path(choose_models(base, None, zoo=zoo, user=user, verify=False).base).resolve()
    except PetiteError:
        return mine
    shipped_base = next((e for e in manifest.bases if e.path.resolve() == in_use), None)
    if shipped_base is None:
        return mine
    names = {e.name for e in mine}
    return mine + [e for e in manifest.adapters
                   if e.record.get("base") == shipped_base.name and e.name not in names]


def _default_base(manifest, user, verify: bool):
    """(path, shipped entry or None) of the base used when none is named: the only base model in
    the user's folder, else the shipped one."""
    mine = _user_entries(user, "base")
    if len(mine) == 1:
        return _usable(mine[0]).path, None
    if mine:
        raise PetiteError(f"no base model chosen, and {Path(user) / USER_BASE_FOLDER} holds {len(mine)} base "
                          "models: choose one, or keep only one there")
    if manifest is None or manifest.base is None:
        where = f" nor in {Path(user) / USER_BASE_FOLDER}" if user is not None else ""
        raise PetiteError(f"no base model given and no shipped base model found{where}: pass --base "
                          "BASE.safetensors (from 'petite pretrain') or run 'petite zoo rebuild'")
    return (verify_entry(manifest.base) if verify else manifest.base.path), manifest.base


def _recorded_base_sha256(base_path: Path) -> str:
    """The base-weights SHA-256 a base-model file records in its metadata ("" if unreadable)."""
    from ..peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
    from ..peft.safetensors_io import read_metadata

    try:
        return str(read_metadata(base_path, BASE_FORMAT, BASE_FORMAT_VERSION).get("base_sha256", ""))
    except PetiteError:
        return ""


def _auto_adapter(manifest, base_path, base_entry, shape, spacing, dicom, user, verify) -> ModelChoice:
    from ..scanner_matching import best_match, describe_scanner, scanner_profile

    if shape is None or spacing is None:
        raise PetiteError("--adapter auto: needs the volume's matrix and voxel spacing")
    grid = f"{'x'.join(str(int(n)) for n in shape)} at {'x'.join(f'{float(v):g}' for v in spacing)} mm"
    mine = [e for e in _user_entries(user, "adapter") if not e.record.get("problem")]
    if mine:  # the user's adapters trained on this base, the most recently written first
        recorded = _recorded_base_sha256(base_path)
        mine = sorted((e for e in mine if recorded and e.record.get("base_sha256") == recorded),
                      key=lambda e: (e.path.stat().st_mtime_ns, e.name), reverse=True)
    shipped = [] if manifest is None or base_entry is None else [
        e for e in manifest.adapters if e.record.get("base") == base_entry.name]
    candidates = [(scanner_profile(e.scanner), e) for e in mine + shipped]
    chosen = best_match(candidates, shape, spacing, dicom)
    if chosen is None:
        kind = "adapter" if user is not None else "shipped adapter"
        why = f"no {kind} for this base" if not candidates else f"no {kind} fits"
        return ModelChoice(base_path, None, f"adapter auto: {why} a {grid} volume; using the base model alone")
    is_shipped = chosen in shipped
    if is_shipped and verify:
        verify_entry(chosen)
    note = f"adapter auto: chose '{chosen.name}' ({describe_scanner(scanner_profile(chosen.scanner))})"
    return ModelChoice(base_path, chosen.path, note + (f"; {SIMULATED_NOTE}" if is_shipped else ""),
                       adapter_name=chosen.name, adapter_shipped=is_shipped)
