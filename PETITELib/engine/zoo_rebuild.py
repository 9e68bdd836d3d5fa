"""``petite zoo rebuild``: reproduce the shipped models from their recorded commands.

One recipe per shipped backbone (:data:`ZOO_RECIPES`, each a :class:`ZooRecipe`): simulate a
source cohort on scanner 1 and target cohorts on scanners 2-5 (full physics; both recipes share
these cohorts), pre-train the ``cpu``-preset base on the source, and for each target scanner
fine-tune a PETITE adapter on its first subjects, holding the others out. Every command runs in
a fresh process and leaves its files in a work folder, so a rerun reuses finished steps and
resumes an interrupted training. Then the held-out subjects of each target scanner are scored
(short scan, base alone, base + adapter), half precision is measured, and the files are copied
with a manifest (SHA-256, size, command, metrics) into the zoo folder. A rebuild may be limited
to some backbones: the other backbones' models are then carried over, verified and unchanged,
with their manifest records (and the commands that made them) from an existing zoo.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import __version__
from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from .model_names import finetuned_model_file
from ..zoo.manifest import MANIFEST_NAME, ZOO_FORMAT, ZOO_FORMAT_VERSION, file_sha256

MAX_ZOO_MB = 60.0
HALF_PRECISION_LIMIT_DB = 0.01  # ship float16 only if no held-out PSNR moves by this much


@dataclass(frozen=True)
class ZooRecipe:
    """What one backbone's shipped models are made of (sizes, seeds, scanners and training
    options); ``name_prefix`` starts the names of its models (``base``, ``scanner4`` for the
    first recipe; ``cvtgan-base``, ``cvtgan-scanner4`` for CvT-GAN's)."""

    backbone: str = "unetr"
    name_prefix: str = ""
    preset: str = "cpu"
    source_scanner: int = 1
    source_subjects: int = 24
    source_seed: int = 100
    target_scanners: Tuple[int, ...] = (4, 5, 2, 3)
    target_subjects: int = 22
    target_seed: int = 200
    finetune_subjects: int = 12  # the first 12 fine-tune (10 train + 2 validation); the other 10 are held out
    simulate_mode: str = "full"
    seed: int = 0
    peft: str = "petite"
    pretrain_options: Tuple[str, ...] = ("--epochs", "24", "--val-subjects", "4", "--val-every", "6")
    finetune_options: Tuple[str, ...] = ("--val-subjects", "2", "--epochs", "24", "--val-every", "4", "--patience", "3")
    # The adapters' peak learning rate: the one `petite bench` kept for PETITE on scanner 4's two
    # validation subjects (never its held-out ones) from 1, 3 and 10 x Table 3's 1e-3 (UNETR: the
    # sweep in docs/benchmarks/unetr-cpu.json), so a rebuild reuses the benchmark's converged runs.
    adapter_lr: float = 0.003

    def base_name(self) -> str:
        """The base model's name in the zoo (what ``--base`` accepts)."""
        return f"{self.name_prefix}base"

    def adapter_name(self, scanner: int) -> str:
        """The scanner adapter's name in the zoo (what ``--adapter`` accepts)."""
        return f"{self.name_prefix}scanner{scanner}"

    def base_file(self) -> str:
        return f"{self.backbone}-{self.preset}-base.safetensors"

    def adapter_file(self, scanner: int) -> str:
        """The shipped adapter's file name in the zoo."""
        return f"{self.backbone}-{self.preset}-scanner{scanner}-{self.peft}.safetensors"

    def work_model_file(self, scanner: int, method: str, lr: float) -> str:
        """A fine-tuned model's file name in the work folder, as ``petite bench`` names it."""
        return finetuned_model_file(self.backbone, self.preset, scanner, method, lr)


# The shipped backbones. CvT-GAN's base trains for its cpu preset's epochs, validated every 6,
# and stops after 3 validations without a better one; its adapters' rate, 3e-3, is the one scanner
# 4's validation subjects chose for CvT-GAN's PETITE in the benchmark on the shipped base (the
# sweep in docs/benchmarks/cvtgan-cpu.ledger.json).
ZOO_RECIPES = (
    ZooRecipe(),
    ZooRecipe(backbone="cvtgan", name_prefix="cvtgan-", adapter_lr=0.003,
              pretrain_options=("--val-subjects", "4", "--val-every", "6", "--patience", "3")),
)
DATA_FIELDS = ("source_scanner", "source_subjects", "source_seed", "target_scanners", "target_subjects",
               "target_seed", "finetune_subjects", "simulate_mode")  # what every recipe of one zoo shares


@dataclass(frozen=True)
class Step:
    """One recorded command: ``name``, ``arguments`` of ``petite`` with ``{work}`` for the work folder."""

    name: str
    arguments: Tuple[str, ...]

    def command(self) -> str:
        return "petite " + " ".join(shlex.quote(a) for a in self.arguments)

    def resolved(self, work: Path) -> List[str]:
        return [a.replace("{work}", str(work)) for a in self.arguments]


def recipe_steps(recipe: ZooRecipe, jobs: int = 1) -> Dict[str, Step]:
    """The recipe's commands by name: ``simulate-source``, ``simulate-target``, the base's and
    each target scanner's adapter's (named as in the zoo: ``base``, ``scanner<k>`` with the
    recipe's name prefix; cohorts ``{work}/cohorts/scanner<k>-finetune``)."""
    steps = {
        "simulate-source": Step("simulate-source", (
            "simulate", "--out", "{work}/data/source", "--scanners", str(recipe.source_scanner),
            "--subjects", str(recipe.source_subjects), "--seed", str(recipe.source_seed),
            "--mode", recipe.simulate_mode, "--jobs", str(jobs))),
        "simulate-target": Step("simulate-target", (
            "simulate", "--out", "{work}/data/target", "--scanners", ",".join(map(str, recipe.target_scanners)),
            "--subjects", str(recipe.target_subjects), "--seed", str(recipe.target_seed),
            "--mode", recipe.simulate_mode, "--jobs", str(jobs))),
        recipe.base_name(): Step(recipe.base_name(), (
            "pretrain", "--cohort", f"{{work}}/data/source/scanner{recipe.source_scanner}",
            "--backbone", recipe.backbone, "--preset", recipe.preset,
            "--out", f"{{work}}/models/{recipe.base_file()}", "--seed", str(recipe.seed),
            *recipe.pretrain_options)),
    }
    for scanner in recipe.target_scanners:
        steps[recipe.adapter_name(scanner)] = Step(recipe.adapter_name(scanner), (
            "finetune", "--base", f"{{work}}/models/{recipe.base_file()}",
            "--cohort", f"{{work}}/cohorts/scanner{scanner}-finetune", "--peft", recipe.peft,
            "--out", f"{{work}}/models/{recipe.work_model_file(scanner, recipe.peft, recipe.adapter_lr)}",
            "--seed", str(recipe.seed), *recipe.finetune_options, "--lr", f"{recipe.adapter_lr:g}"))
    return steps


def _out_path(step: Step, work: Path) -> Path:
    arguments = step.resolved(work)
    return Path(arguments[arguments.index("--out") + 1])


def run_recipe_step(step: Step, work: Path, recipe: ZooRecipe, cancel) -> None:
    """Run one recipe step in ``work`` unless its output is finished (resume an interrupted training).

    A fine-tuning step on ``{work}/cohorts/scanner<k>-finetune`` first links that cohort and its
    held-out partner ``scanner<k>-test`` from the simulated target cohort.
    """
    from .bench import run_child, simulated_cohort_ready, split_cohort, train_in_child

    arguments = step.resolved(work)
    if arguments[0] == "finetune":
        cohort = Path(arguments[arguments.index("--cohort") + 1])
        scanner = cohort.name[len("scanner"):-len("-finetune")]
        split_cohort(work / "data" / "target" / f"scanner{scanner}", recipe.finetune_subjects,
                     cohort, cohort.with_name(f"scanner{scanner}-test"))
    if arguments[0] == "simulate":
        value = dict(zip(arguments[1::2], arguments[2::2]))
        out = Path(value["--out"])
        if all(simulated_cohort_ready(out / f"scanner{k}", value["--mode"], int(value["--seed"]),
                                      int(value["--subjects"])) for k in value["--scanners"].split(",")):
            return
        run_child([*arguments, "--overwrite", "--resume"], cancel)  # keeps an interrupted run's subjects
        return
    out = _out_path(step, work)
    out.parent.mkdir(parents=True, exist_ok=True)
    without_out = list(arguments)
    del without_out[without_out.index("--out"):without_out.index("--out") + 2]
    train_in_child(without_out[0], out, without_out[1:], cancel)


def _half_precision_change(load, subjects, device) -> float:
    """Largest |PSNR(float16 weights) - PSNR(float32 weights)| (dB, head-masked) over ``subjects``."""
    import torch

    from .evaluation import load_reference, score
    from .inference import reconstruct_volume
    from ..nifti_io import load_volume

    model = load()
    exact = {}
    for subject in subjects:
        reference = load_reference(subject)
        short = load_volume(subject.short).array
        exact[subject.subject_id] = score(reconstruct_volume(model, short, reference.spacing, device=device),
                                          reference)["psnr"]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(parameter.half().float())
    worst = 0.0
    for subject in subjects:
        reference = load_reference(subject)
        short = load_volume(subject.short).array
        half = score(reconstruct_volume(model, short, reference.spacing, device=device), reference)["psnr"]
        worst = max(worst, abs(half - exact[subject.subject_id]))
    return worst


def _half_precision_note(worst_db: float) -> str:
    verdict = ("under the limit, so float16 would be allowed" if worst_db < HALF_PRECISION_LIMIT_DB
               else "over the limit, so float16 is not allowed")
    return (f"float16 weights (rounded from these) change held-out PSNR by at most {worst_db:.4f} dB on one "
            f"subject per scanner: {verdict}; float32 is shipped, as it fits the {MAX_ZOO_MB:.0f} MB limit")


def json_dumps(document: dict) -> str:
    """The manifest as indented JSON (NumPy floats written as numbers)."""
    import json

    return json.dumps(document, indent=1, default=lambda v: float(v) if isinstance(v, np.floating) else str(v))


def _metrics(entry: dict) -> dict:
    return {"mean": entry["mean"], "sd": entry["sd"]}


def zoo_steps(recipes: Sequence[ZooRecipe], jobs: int = 1) -> Dict[str, Step]:
    """Every recipe's steps (:func:`recipe_steps`) in order, the shared simulation steps once.

    PetiteError when the recipes disagree on the cohorts (:data:`DATA_FIELDS`) or a model name
    repeats: one zoo's models are all trained and scored on the same simulated subjects."""
    steps: Dict[str, Step] = {}
    for recipe in recipes:
        differing = [f for f in DATA_FIELDS if getattr(recipe, f) != getattr(recipes[0], f)]
        if differing:
            raise PetiteError(f"zoo recipes for {recipes[0].backbone} and {recipe.backbone} differ in "
                              f"{', '.join(differing)}: one zoo shares its simulated cohorts")
        for name, step in recipe_steps(recipe, jobs).items():
            if name in steps and not name.startswith("simulate-"):
                raise PetiteError(f"zoo recipes: the model name {name!r} repeats (give each backbone a name_prefix)")
            steps.setdefault(name, step)
    return steps


def _score_recipe(recipe: ZooRecipe, steps: Dict[str, Step], work: Path, torch_device, progress, cancel) -> tuple:
    """The manifest records (base first, then its adapters) of one rebuilt recipe, and the largest
    float16 change of held-out PSNR (dB) over its adapters."""
    from ..data.cohort import load_cohort
    from ..peft.adapter_files import ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION
    from ..peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
    from ..peft.safetensors_io import read_metadata
    from ..scanner_matching import describe_scanner, scanner_profile
    from .evaluation import evaluate_models
    from .models import describe_weights, load_for_inference

    base_step = steps[recipe.base_name()]
    base_path = _out_path(base_step, work)
    training = read_metadata(base_path, BASE_FORMAT, BASE_FORMAT_VERSION).get("training", {})
    records = [{
        "name": recipe.base_name(), "kind": "base", "file": recipe.base_file(), "backbone": recipe.backbone,
        "preset": recipe.preset, "spec": "",
        "scanner": load_cohort(work / "data" / "source" / f"scanner{recipe.source_scanner}").scanner,
        "description": f"{recipe.backbone} base, source scanner: {training.get('scanner', recipe.source_scanner)}",
        "command": base_step.command(), "seed": recipe.seed, "source_path": str(base_path),
        "metrics": {"held_out": f"{len(training.get('val_subjects', []))} validation subjects of scanner "
                                f"{recipe.source_scanner} (not trained on; used to pick the best epoch)",
                    "subjects": training.get("val_subjects", []),
                    "input": training.get("val_input_metrics", {}), "base": training.get("val_metrics", {})}}]
    half_changes = []
    for scanner in recipe.target_scanners:
        check_cancel(cancel)
        step = steps[recipe.adapter_name(scanner)]
        adapter = _out_path(step, work)
        test = list(load_cohort(work / "cohorts" / f"scanner{scanner}-test").subjects)
        scored = evaluate_models(test, {"no-ft": lambda: load_for_inference(base_path, None, torch_device),
                                        "adapter": lambda a=adapter: load_for_inference(base_path, a, torch_device)},
                                 device=torch_device, progress=progress, cancel=cancel)
        half_changes.append(_half_precision_change(
            lambda a=adapter: load_for_inference(base_path, a, torch_device), test[:1], torch_device))
        described = describe_weights(adapter)
        scanner_info = read_metadata(adapter, ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION).get("scanner", {})
        records.append({
            "name": recipe.adapter_name(scanner), "kind": "adapter", "base": recipe.base_name(),
            "file": recipe.adapter_file(scanner), "backbone": recipe.backbone, "preset": recipe.preset,
            "spec": described["spec"], "scanner": scanner_info,
            "description": describe_scanner(scanner_profile(scanner_info)),
            "command": step.command(), "seed": recipe.seed, "source_path": str(adapter),
            "training": {k: described["training"].get(k) for k in
                         ("epochs", "best_epoch", "percent", "wall_seconds", "peak_mem_mb", "device")},
            "metrics": {"held_out": f"{len(test)} held-out subjects of scanner {scanner}",
                        "subjects": [s.subject_id for s in test], "input": _metrics(scored["input"]),
                        "no-ft": _metrics(scored["no-ft"]), "adapter": _metrics(scored["adapter"])}})
    return records, max(half_changes, default=0.0)


def _carried_records(carry_from, backbones: Sequence[str]) -> tuple:
    """(manifest records with ``source_path``, their zoo's half-precision change in dB, the backbones
    of ``backbones`` it holds no model of) for the models of ``backbones`` in the zoo at
    ``carry_from``, each file verified against its SHA-256 first. PetiteError when that zoo is
    missing."""
    from ..zoo.manifest import load_manifest, verify_entry

    manifest = load_manifest(carry_from)
    records, absent = [], []
    for backbone in backbones:
        entries = [e for e in manifest.entries if e.record.get("backbone", "unetr") == backbone]
        if not entries:
            absent.append(backbone)
        for entry in entries:
            records.append({**entry.record, "source_path": str(verify_entry(entry)), "carried": True})
    worst = (manifest.document.get("half_precision") or {}).get("max_abs_psnr_change_db", 0.0)
    return records, float(worst), absent


def keep_zoo_bases(recipes: Sequence[ZooRecipe], work: Path, zoo) -> List[Path]:
    """Put each recipe's base from the zoo at ``zoo`` into ``work/models`` as its finished
    pre-training step, so a rebuild fine-tunes (or reuses) adapters on that very base instead of
    pre-training a new one (hours on a CPU). Returns the work-folder paths.

    Each kept base must have been made by the recipe's own pre-training command (its manifest
    record's ``command``) and pass its SHA-256 check; a base already in the work folder must be
    the same file. PetiteError (one line) otherwise, or when the zoo holds no such base."""
    from ..zoo.manifest import load_manifest, verify_entry

    manifest = load_manifest(zoo)
    kept = []
    for recipe in recipes:
        entry = manifest.entry(recipe.base_name())
        if entry is None or entry.kind != "base" or entry.record.get("backbone", "unetr") != recipe.backbone:
            raise PetiteError(f"{manifest.folder / MANIFEST_NAME}: holds no {recipe.backbone} base "
                              f"'{recipe.base_name()}' to keep (rebuild without --keep-base to pre-train one)")
        command = recipe_steps(recipe)[recipe.base_name()].command()
        if entry.record.get("command") != command:
            raise PetiteError(f"{entry.path}: made by '{entry.record.get('command')}', not by this recipe's "
                              f"'{command}'; rebuild without --keep-base to pre-train the base again")
        source = verify_entry(entry)
        target = work / "models" / recipe.base_file()
        if target.exists():
            if file_sha256(target) != entry.record["sha256"]:
                raise PetiteError(f"{target}: differs from the zoo's {entry.path.name}; the work folder's adapters "
                                  "may have been trained on it: use another --work, or rebuild without --keep-base")
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, source.read_bytes())
        kept.append(target)
    return kept


def rebuild_zoo(work, out, *, recipes: Sequence[ZooRecipe] = ZOO_RECIPES, only: Optional[Sequence[str]] = None,
                carry_from=None, keep_base: bool = False, jobs: int = 1, device: str = "auto", overwrite: bool = False,
                progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> dict:
    """Run the recipes in ``work`` and write the model files and ``manifest.json`` into ``out``.

    only: the backbones to rebuild (None: every recipe's); the models of the other recipes'
    backbones are copied unchanged, with their manifest records, from the zoo at ``carry_from``
    (default: the shipped zoo, :func:`PETITELib.zoo.zoo_dir`), each verified against its SHA-256.
    keep_base: the rebuilt backbones keep their bases from that zoo (:func:`keep_zoo_bases`) and
    only their adapters are made (or reused from ``work``). A backbone neither rebuilt nor held by
    that zoo stays out of the new one too (listed as ``absent`` in the manifest's ``rebuild``, with
    no commands). Refuses (PetiteError) an ``out`` that
    already holds a manifest unless ``overwrite``, an unknown backbone in ``only``, and a zoo over
    :data:`MAX_ZOO_MB`. Returns the manifest document.
    """
    from ..extras import require

    require("sim", "petite zoo rebuild")
    from ..peft.adapter_files import ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION
    from ..peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
    from ..peft.safetensors_io import copy_in_current_format
    from ..zoo.manifest import zoo_dir
    from .devices import select_device

    work, out = Path(work).resolve(), Path(out)
    if (out / MANIFEST_NAME).exists() and not overwrite:
        raise PetiteError(f"{out / MANIFEST_NAME}: already exists (use --overwrite to replace the zoo)")
    known = [r.backbone for r in recipes]
    unknown = [b for b in (only or ()) if b not in known]
    if unknown:
        raise PetiteError(f"--backbone {unknown[0]}: no zoo recipe for it (the zoo's backbones: {', '.join(known)})")
    rebuilt = [r for r in recipes if only is None or r.backbone in only]
    kept = [r.backbone for r in recipes if r not in rebuilt]
    carried, carried_half, absent = _carried_records(carry_from or zoo_dir(), kept) if kept else ([], None, [])
    kept = [b for b in kept if b not in absent]
    recipes = [r for r in recipes if r.backbone not in absent]
    if keep_base:
        keep_zoo_bases(rebuilt, work, carry_from or zoo_dir())
    steps = zoo_steps(rebuilt, jobs)
    total = len(steps) + 1
    started = time.perf_counter()
    for number, (name, step) in enumerate(steps.items()):
        check_cancel(cancel)
        report(progress, "zoo", number, total, f"{name}: {step.command()}")
        run_recipe_step(step, work, rebuilt[0], cancel)
    report(progress, "zoo", total - 1, total, "score held-out subjects")
    torch_device = select_device(device)
    models, half_changes = [], [] if carried_half is None else [carried_half]
    for recipe in recipes:
        if recipe in rebuilt:
            records, worst = _score_recipe(recipe, steps, work, torch_device, progress, cancel)
            models += records
            half_changes.append(worst)
        else:
            models += [r for r in carried if r.get("backbone", "unetr") == recipe.backbone]
    out.mkdir(parents=True, exist_ok=True)
    worst_half = max(half_changes) if half_changes else float("nan")
    for record in models:
        source, target = Path(record.pop("source_path")), out / record["file"]
        carried = record.pop("carried", False)
        file_format = (BASE_FORMAT, BASE_FORMAT_VERSION) if record["kind"] == "base" else \
            (ADAPTER_FORMAT, ADAPTER_FORMAT_VERSION)
        if carried and source.resolve() != target.resolve():
            atomic_write_bytes(target, source.read_bytes(), overwrite=True)  # byte for byte: its SHA-256 stays
        elif not carried:
            copy_in_current_format(source, target, *file_format)  # a reused older file is upgraded
        record["sha256"], record["size"] = file_sha256(target), target.stat().st_size
        record["precision"] = "float32"
    total_mb = sum(r["size"] for r in models) / 2 ** 20
    if total_mb > MAX_ZOO_MB:
        raise PetiteError(f"{out}: the zoo would take {total_mb:.1f} MB, more than {MAX_ZOO_MB:.0f} MB")
    all_steps = zoo_steps(recipes, jobs)
    document = {
        "format": ZOO_FORMAT, "format_version": ZOO_FORMAT_VERSION, "petite_version": __version__,
        "models": models, "total_mb": round(total_mb, 2),
        "half_precision": {"max_abs_psnr_change_db": round(worst_half, 5), "limit_db": HALF_PRECISION_LIMIT_DB,
                           "shipped": "float32", "note": _half_precision_note(worst_half)},
        "rebuild": {"recipes": [{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(r).items()}
                                for r in recipes],
                    "commands": [s.command() for s in all_steps.values()],
                    "rebuilt": [r.backbone for r in rebuilt], "kept": kept, "absent": absent,
                    "bases_kept": [r.backbone for r in rebuilt] if keep_base else [],
                    "split": f"first {recipes[0].finetune_subjects} subjects of each target cohort fine-tune "
                             f"(linked into {{work}}/cohorts/scanner<k>-finetune), the rest are held out",
                    "seconds_this_run": round(time.perf_counter() - started, 1)}}
    atomic_write_bytes(out / MANIFEST_NAME, (json_dumps(document) + "\n").encode(), overwrite=True)
    report(progress, "zoo", total, total, "done")
    return document
