"""What a federation trains: the plan shared by the server and every site.

A :class:`FederationPlan` names the base model (by the SHA-256 of its weights, with the file
each site reads it from), the PEFT spec, the number of rounds and of local epochs per round,
the seed, the training settings (as ``petite finetune`` resolves them for the method) and the
sites with their cohort folders. It also lists the adapter's tensors (name -> shape): the only
tensors that may leave a site. The job carries it as ``petite_federation.json`` in every app,
with the initial adapter (``initial_adapter.safetensors``, the spec's freshly initialised
tensors: every site starts from the same global adapter).

Round r (1..rounds) trains the global adapter for ``local_epochs`` epochs at each site; the
learning-rate schedule runs over all rounds (``settings.epochs`` = rounds x local_epochs), so a
federation follows the curve of one ``petite finetune`` run of that many epochs.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes

PLAN_FILE = "petite_federation.json"
INITIAL_ADAPTER_FILE = "initial_adapter.safetensors"
PLAN_FORMAT = "petite-federation"
PLAN_FORMAT_VERSION = 1
SITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class Site:
    """A participant: its FLARE client ``name``, its ``cohort`` folder and its ``base`` file
    (paths on that site's machine; the site may override both, see :func:`site_paths`)."""

    name: str
    cohort: str
    base: str


@dataclass(frozen=True)
class FederationPlan:
    """See the module docstring. ``adapter_tensors``: name -> shape of every adapter tensor;
    ``parameters``: trainable/total parameter counts and their percentage."""

    name: str
    backbone: str
    preset: str
    base_sha256: str
    spec: str
    rounds: int
    local_epochs: int
    seed: int
    settings: Dict[str, object]
    sites: List[Site]
    adapter_tensors: Dict[str, List[int]]
    parameters: Dict[str, float] = field(default_factory=dict)

    @property
    def adapter_bytes(self) -> int:
        """Bytes of the adapter's float32 tensors: the payload a site sends per round."""
        total = 0
        for shape in self.adapter_tensors.values():
            count = 1
            for n in shape:
                count *= int(n)
            total += 4 * count
        return total

    def site(self, name: str) -> Site:
        """The site called ``name`` (PetiteError when the federation has none)."""
        for site in self.sites:
            if site.name == name:
                return site
        raise PetiteError(f"site '{name}' is not part of federation '{self.name}' "
                          f"(sites: {', '.join(s.name for s in self.sites)})")

    def to_json(self) -> str:
        """The plan file's text."""
        document = {"format": PLAN_FORMAT, "format_version": PLAN_FORMAT_VERSION, **asdict(self)}
        return json.dumps(document, indent=1, sort_keys=True)

    def write(self, path, overwrite: bool = False) -> Path:
        """Write the plan file to ``path`` (atomically); returns ``path``."""
        atomic_write_bytes(Path(path), self.to_json().encode(), overwrite=overwrite)
        return Path(path)


def read_plan(path) -> FederationPlan:
    """Read a plan file (PetiteError naming ``path`` when it is missing, damaged or of another format)."""
    path = Path(path)
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PetiteError(f"{path}: cannot read the federation plan ({type(exc).__name__})") from None
    if document.get("format") != PLAN_FORMAT or document.get("format_version", 0) > PLAN_FORMAT_VERSION:
        raise PetiteError(f"{path}: not a PETITE federation plan of format version <= {PLAN_FORMAT_VERSION}")
    fields = {k: v for k, v in document.items() if k not in ("format", "format_version")}
    try:
        fields["sites"] = [Site(**site) for site in fields["sites"]]
        return FederationPlan(**fields)
    except (KeyError, TypeError):
        raise PetiteError(f"{path}: federation plan is incomplete or has unknown fields") from None


def check_site_names(names: List[str]) -> None:
    """Refuse (PetiteError) duplicate names or names FLARE cannot use as client names."""
    if len(names) < 1:
        raise PetiteError("--site: a federation needs at least one site")
    for name in names:
        if not SITE_NAME.match(name) or name == "server":
            raise PetiteError(f"--site {name}: a site name is letters, digits, '-', '_' or '.' "
                              "(not 'server'), as in the site's FLARE startup kit")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PetiteError(f"--site: site name(s) {', '.join(duplicates)} given twice")


def parse_site(text: str) -> tuple:
    """``NAME=COHORT`` -> (name, cohort folder); PetiteError naming --site otherwise."""
    name, sep, cohort = text.partition("=")
    if not sep or not name or not cohort:
        raise PetiteError(f"--site {text}: expected NAME=COHORT_FOLDER, e.g. hospital-a=/data/scanner4")
    return name.strip(), cohort.strip()


def site_paths(plan: FederationPlan, name: str, environ: Optional[dict] = None) -> tuple:
    """(cohort folder, base file) for site ``name``: from the plan, unless the site's environment
    sets ``PETITE_FL_COHORT`` / ``PETITE_FL_BASE`` (a hospital need not tell the others its paths)."""
    import os

    environ = os.environ if environ is None else environ
    site = plan.site(name)
    return environ.get("PETITE_FL_COHORT", site.cohort), environ.get("PETITE_FL_BASE", site.base)


def make_plan(name: str, base, sites: Dict[str, str], *, peft: str = "petite", rounds: int = 12,
              local_epochs: int = 1, seed: int = 0, initial_adapter=None, site_bases: Optional[Dict[str, str]] = None,
              **overrides) -> FederationPlan:
    """The plan of a federation fine-tuning ``base`` (file or shipped name) with spec ``peft``.

    sites: site name -> cohort folder (on that site); site_bases: site name -> base file there
    (default: ``base`` as resolved here). Settings are ``petite finetune``'s for the method
    (the paper's Table 3 learning rate and weight decay, the preset's batch, crops, validation
    subjects...) with ``overrides`` (any :class:`~PETITELib.engine.settings.TrainSettings` field
    but ``epochs``, which is rounds x local_epochs). With ``initial_adapter`` (a path), also write
    the spec's initial tensors there as an adapter file (seeded by ``seed``).
    """
    import torch

    from ..engine.jobs import host_state_kept, seed_everything
    from ..engine.models import load_base, resolve_base
    from ..engine.settings import finetune_defaults
    from ..peft import apply_peft, count_parameters, peft_state_dict, save_adapter

    check_site_names(list(sites))
    for option, value in (("--rounds", rounds), ("--local-epochs", local_epochs)):
        if int(value) != value or value < 1:
            raise PetiteError(f"{option} {value}: must be a positive integer")
    if "epochs" in overrides:
        raise PetiteError("--epochs: a federation trains --rounds x --local-epochs epochs")
    base_path = resolve_base(base)
    with host_state_kept():
        seed_everything(seed)
        loaded = load_base(base_path, torch.device("cpu"))
        model = loaded.model
        spec = apply_peft(model, peft)
        if spec.full:
            raise PetiteError("--peft full: a federation exchanges adapters; choose a PEFT spec (e.g. petite)")
        settings = finetune_defaults(model.backbone_name, model.preset, spec).with_overrides(
            epochs=rounds * local_epochs, **overrides)
        count = count_parameters(model)
        tensors = peft_state_dict(model)
        if initial_adapter is not None:
            save_adapter(initial_adapter, model, training={"federated": "initial adapter", "seed": seed},
                         overwrite=True)
    site_bases = site_bases or {}
    return FederationPlan(
        name=name, backbone=model.backbone_name, preset=model.preset, base_sha256=loaded.sha256,
        spec=spec.canonical, rounds=int(rounds), local_epochs=int(local_epochs), seed=int(seed),
        settings=settings.as_dict(),
        sites=[Site(site, str(cohort), str(site_bases.get(site, base_path))) for site, cohort in sites.items()],
        adapter_tensors={k: list(v.shape) for k, v in sorted(tensors.items())},
        parameters={"trainable": count.trainable, "total": count.total, "percent": count.percent})
