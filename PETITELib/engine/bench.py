"""``petite bench``: the paper's protocol end to end on simulated data.

1. simulate a source cohort (scanner 1) and, with another seed (other subjects), a target
   cohort (default scanner 4), in full physics mode or the fast surrogate (recorded);
2. pre-train a base model on the source cohort (``petite pretrain``);
3. split the target cohort into fine-tuning subjects (10 training + validation) and held-out
   test subjects, and fine-tune every method of :data:`BENCH_METHODS` on the former, each in a
   fresh process so that its wall time and peak memory are measured in isolation;
   With several learning-rate factors (the full plans) each method is fine-tuned once per
   factor of its Table-3 learning rate, with early stopping, and the run with the best
   validation PSNR is kept (:func:`choose_learning_rate`): the sweep sees the validation
   subjects only. The other target scanners fine-tune :attr:`BenchPlan.secondary_methods` at
   the learning rate chosen on the main (first) target, as soon as that choice is made: the
   main target's other methods are trained last (:func:`training_passes`);
4. score the input (short scan) and the base alone (No-FT) on each target's held-out subjects
   once, and every fine-tuning run right after its training (:mod:`.evaluation`); write
   RESULT.json, RESULT.md, RESULT.png (scores of the input, No-FT and the kept runs) and
   RESULT-curves.png (validation PSNR per epoch of every run).

After every finished step the benchmark's ledger (:mod:`.bench_ledger`, RESULT.ledger.json by
default) records the scores and each run's training record; a run in it is never trained or
scored again, and the result's rows are assembled from it alone, so a rerun resumes from the
ledger even on another machine without the work folder (given the same base model: the ledger
records its SHA-256, so a base pre-trained in a lost work folder must be kept too). The held-out
scores of the runs not kept are in the ledger, but no choice reads them and no report shows
them: the learning rate is chosen on validation PSNR only. Every step also leaves its files in
a work folder; a rerun with it reuses finished trainings and resumes an interrupted one from
its checkpoint.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch

from .. import __version__
from ..data.cohort import load_cohort
from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes
from ..progress import CancelToken, ProgressCallback, check_cancel, report
from ..regional import SUMMARY_KEYS as REGIONAL_KEYS, regional_targets
from .bench_ledger import BenchLedger, ledger_file
from .checkpoint import checkpoint_folder
from .devices import describe_device, select_device
from .evaluation import evaluate_models
from .memory import max_rss_mb
from ..peft import base_model_sha256, default_hyperparameters, parse_spec
from .model_names import finetuned_model_file
from .models import describe_weights, load_for_inference
from .reports import bench_curves_png, bench_plot_png, bench_table, write_json

BENCH_METHODS = ("full", "layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "gvpt", "fullres", "petite")
METRIC_KEYS = ("psnr", "ssim", "nrmse", "psnr_whole", "ssim_whole", "nrmse_whole",
               "psnr_truth", "ssim_truth", "nrmse_truth") + REGIONAL_KEYS


@dataclass(frozen=True)
class BenchPlan:
    """What a benchmark runs: data sizes, simulation mode and the training overrides.

    source_subjects: simulated on the source scanner with ``source_seed`` (split into
    training/validation by ``petite pretrain``, ``source_val`` of them for validation); target
    scanners: each simulated with ``target_seed`` (the same subjects on every target), its first
    ``target_train`` + ``target_val`` subjects fine-tune (``petite finetune`` splits them), the
    next ``target_test`` are held out for the scores. The full cpu plan uses the model zoo's
    seeds, sizes and fine-tuning options (:class:`PETITELib.engine.zoo_rebuild.ZooRecipe`), so a bench
    in the zoo's work folder reuses its cohorts, its Full-FT runs (``petite zoo gap``) and its
    PETITE adapters. pretrain/finetune: TrainSettings overrides. base: an existing base-model
    file to fine-tune instead of pre-training one (then no source cohort is simulated).
    """

    backbone: str
    preset: str
    quick: bool
    seed: int
    device: str
    simulate_mode: str
    source_scanner: int
    target_scanners: tuple
    source_subjects: int
    source_val: int
    target_train: int
    target_val: int
    target_test: int
    jobs: int
    source_seed: int = 100
    target_seed: int = 200
    pretrain: Dict[str, float] = field(default_factory=dict)
    finetune: Dict[str, float] = field(default_factory=dict)
    methods: tuple = BENCH_METHODS
    base: Optional[str] = None
    lr_factors: tuple = (1.0,)
    secondary_methods: Optional[tuple] = None

    def model_file(self, scanner: int, method: str, lr: float) -> str:
        """File name of a model fine-tuned at peak learning rate ``lr``, as the model zoo names it."""
        return finetuned_model_file(self.backbone, self.preset, scanner, method, lr)

    def methods_for(self, scanner: int) -> tuple:
        """The methods fine-tuned for ``scanner``: all on the main (first) target, the secondary
        ones (in the order of ``methods``) on the others."""
        if scanner == self.target_scanners[0] or self.secondary_methods is None:
            return self.methods
        return tuple(m for m in self.methods if m in self.secondary_methods)

    def table3_lr(self, method: str) -> float:
        """The method's peak learning rate in supplementary Table 3 for this backbone."""
        return default_hyperparameters(self.backbone, method).learning_rate

    def sweep(self, method: str) -> List[float]:
        """The peak learning rates the method is fine-tuned with: ``lr_factors`` x its Table-3 rate."""
        return [float(f"{factor * self.table3_lr(method):.6g}") for factor in self.lr_factors]


def parse_targets(text) -> tuple:
    """``"4,2,3,5"`` -> (4, 2, 3, 5): target scanners in the order given (the first is the main
    target), each once, not the source (1); PetiteError naming --targets."""
    from ..data.scanners import parse_scanner_list

    try:
        parse_scanner_list(text)
    except PetiteError as error:
        raise PetiteError(str(error).replace("--scanners", "--targets")) from None
    targets = tuple(dict.fromkeys(int(part) for part in str(text).split(",") if part.strip()))
    if 1 in targets:
        raise PetiteError("--targets: scanner 1 is the source scanner; choose among 2, 3, 4, 5")
    return targets


def parse_lr_factors(text) -> tuple:
    """``"1,3,10"`` -> (1.0, 3.0, 10.0): positive learning-rate factors, each once, in the order
    given; PetiteError naming --lr-factors."""
    try:
        factors = tuple(dict.fromkeys(float(part) for part in str(text).split(",") if part.strip()))
    except ValueError:
        raise PetiteError(f"--lr-factors {text!r}: give positive numbers separated by commas, e.g. 1,3,10") from None
    if not factors or not all(0 < f < float("inf") for f in factors):
        raise PetiteError(f"--lr-factors {text!r}: give positive numbers separated by commas, e.g. 1,3,10")
    return factors


# The full plans' learning-rate sweep (factors of each method's Table-3 rate) and early stopping.
# Upwards only: at Table 3's rates the 24-epoch cpu runs were still improving at their last
# validation (Full-FT, LoRA, PETITE) or hardly moved from No-FT (LayerNorm, BitFit, VPT).
SWEEP_FACTORS = (1.0, 3.0, 10.0)
SWEEP_PATIENCE = 3  # validations without a better validation PSNR before a run stops (cpu: every 4 epochs)
PAPER_PATIENCE = 10  # the same for the paper preset, which validates every epoch
SECONDARY_METHODS = ("full", "petite")  # what the targets after the first fine-tune in the full plans
# Within a target, the runs of these methods come first (then the others, in the plan's order), so
# that when a benchmark spans sessions the comparison its targets are about is finished first.
FIRST_METHODS = ("full", "petite", "fullres")


def make_plan(backbone: str, preset: str, quick: bool = False, seed: int = 0, device: str = "auto",
              targets=(4,), simulate_mode: Optional[str] = None, jobs: int = 1,
              methods=BENCH_METHODS, base: Optional[str] = None, lr_factors: Optional[tuple] = None,
              secondary_methods: Optional[tuple] = None) -> BenchPlan:
    """The benchmark plan: ``quick`` (under 20 minutes on 2 CPU cores with the cpu preset) or full.

    Quick: fast surrogate simulation, 8 source and 15 target subjects (10 train, 2 val, 3 test),
    short trainings (10 pre-training epochs of 4 steps, 3 fine-tuning epochs of 4 steps) at
    Table 3's rates, every method on every target, seeds from ``seed``. Full: physics
    simulation; cpu preset as the model zoo (24 source subjects with 4 for validation, 10 + 2
    fine-tuning and 10 test subjects per target, a budget of 24 fine-tuning epochs validated
    every 4); paper preset: 45 source subjects with 15 for validation, 10 + 15 + 10 and Table 3's
    epochs. Both full plans sweep :data:`SWEEP_FACTORS` x Table 3's rate with early stopping
    (:data:`SWEEP_PATIENCE`, :data:`PAPER_PATIENCE`) on the main target and fine-tune :data:`SECONDARY_METHODS` on the
    others. ``lr_factors`` and ``secondary_methods`` override those (with quick, None: every
    method on every target).
    """
    unknown = [m for m in [*methods, *(secondary_methods or ())] if m not in BENCH_METHODS]
    if unknown:
        raise PetiteError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(BENCH_METHODS)})")
    targets = parse_targets(",".join(map(str, targets)))
    common = dict(jobs=jobs, methods=tuple(methods), base=base)
    if quick:
        return BenchPlan(backbone, preset, True, seed, device, simulate_mode or "fast", 1, targets,
                         source_subjects=8, source_val=2, target_train=10, target_val=2, target_test=3,
                         source_seed=seed, target_seed=seed + 1, **common,
                         lr_factors=tuple(lr_factors or (1.0,)),
                         secondary_methods=tuple(secondary_methods) if secondary_methods else None,
                         pretrain=dict(epochs=10, crops_per_subject=4, val_every=5),
                         finetune=dict(epochs=3, crops_per_subject=2, val_every=3))
    sweep = dict(lr_factors=tuple(lr_factors or SWEEP_FACTORS),
                 secondary_methods=tuple(secondary_methods or SECONDARY_METHODS))
    if preset == "paper":
        return BenchPlan(backbone, preset, False, seed, device, simulate_mode or "full", 1, targets,
                         source_subjects=45, source_val=15, target_train=10, target_val=15, target_test=10,
                         **common, **sweep, finetune=dict(patience=PAPER_PATIENCE))
    return BenchPlan(backbone, preset, False, seed, device, simulate_mode or "full", 1, targets,
                     source_subjects=24, source_val=4, target_train=10, target_val=2, target_test=10,
                     **common, **sweep, pretrain=dict(epochs=24, val_every=6),
                     finetune=dict(epochs=24, val_every=4, patience=SWEEP_PATIENCE))


def machine_record(device: torch.device) -> dict:
    """Platform, CPU count, threads, versions and device: what a benchmark records of its machine."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
            "torch": torch.__version__, "petite": __version__, "device": describe_device(device)}


def simulated_cohort_ready(folder: Path, mode: str, seed: int, subjects: int) -> bool:
    """Whether ``folder`` already holds a simulated cohort of ``subjects`` made with ``mode`` and ``seed``."""
    if not (folder / "scanner.json").exists():
        return False
    record = json.loads((folder / "scanner.json").read_text())
    return (record.get("mode"), record.get("seed"), len(load_cohort(folder))) == (mode, seed, subjects)


def split_cohort(folder: Path, cut: int, first: Path, rest: Path) -> tuple:
    """Link the first ``cut`` subjects of cohort ``folder`` into cohort ``first`` and the others
    into cohort ``rest`` (relative symlinks plus a copy of scanner.json); returns (first, rest)."""
    subjects = [s.subject_id for s in load_cohort(folder).subjects]
    for cohort, chosen in ((first, subjects[:cut]), (rest, subjects[cut:])):
        shutil.rmtree(cohort, ignore_errors=True)
        cohort.mkdir(parents=True)
        shutil.copy(folder / "scanner.json", cohort / "scanner.json")
        for subject in chosen:
            (cohort / subject).symlink_to(os.path.relpath(folder / subject, cohort))
    return first, rest


def _wait_for_child(process: subprocess.Popen, cancel: Optional[CancelToken]) -> Optional[float]:
    """Wait for ``process`` (terminated on cancel) and set its return code; returns its peak RSS
    in MiB where the OS reports a child's (``os.wait4``: Linux, macOS), else None (Windows)."""
    wait4 = getattr(os, "wait4", None)
    while True:
        if wait4 is not None:
            pid, status, usage = wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                return round(max_rss_mb(usage.ru_maxrss), 1)
        elif process.poll() is not None:
            return None
        if cancel is not None and cancel.cancelled:
            process.terminate()
        time.sleep(0.2)


def run_child(arguments: List[str], cancel: Optional[CancelToken] = None) -> dict:
    """Run ``python -m PETITELib.cli ARGUMENTS`` in a fresh process (terminated on cancel);
    returns its peak RSS (MiB, None where the OS does not report it) as ``process_peak_rss_mb``;
    PetiteError when it fails."""
    command = [sys.executable, "-m", "PETITELib.cli", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        peak_rss_mb = _wait_for_child(process, cancel)
    except BaseException:
        process.terminate()
        process.wait()
        raise
    check_cancel(cancel)
    if process.returncode != 0:
        raise PetiteError(f"petite {arguments[0]} failed (exit {process.returncode}): {' '.join(command)}")
    return {"process_peak_rss_mb": peak_rss_mb}


def train_in_child(command: str, out: Path, arguments: List[str], cancel: Optional[CancelToken] = None) -> dict:
    """``petite COMMAND ARGUMENTS --out OUT`` in a fresh process, unless OUT is already finished
    (exists without a checkpoint folder: returns {}); resumes from OUT's checkpoint when there is one."""
    if out.exists() and not checkpoint_folder(out).exists():
        return {}
    resume = ["--resume"] if (checkpoint_folder(out) / "state.json").exists() else ["--overwrite"]
    return run_child([command, *arguments, "--out", str(out), *resume], cancel)


class _Bench:
    """One benchmark run in a work folder (see the module docstring)."""

    def __init__(self, plan: BenchPlan, work: Path, ledger: BenchLedger, progress, cancel) -> None:
        self.plan, self.work, self.ledger, self.progress, self.cancel = plan, work, ledger, progress, cancel
        runs = sum(len(plan.methods_for(k)) * (len(plan.lr_factors) if k == plan.target_scanners[0] else 1)
                   for k in plan.target_scanners)
        self.steps = (1 if plan.base else 2) + 2 * len(plan.target_scanners) + runs
        self.done = 0
        self.models = work / "models"
        self.base = Path(plan.base) if plan.base else self.models / f"{plan.backbone}-{plan.preset}-base.safetensors"

    def step(self, message: str, steps: int = 1) -> None:
        """Report the start of the next ``steps`` steps (more than one: steps the ledger holds)."""
        check_cancel(self.cancel)
        report(self.progress, "bench", self.done, self.steps, message)
        first, last = self.done + 1, self.done + steps
        sys.stderr.write(f"petite bench [{first if steps == 1 else f'{first}-{last}'}/{self.steps}]: {message}\n")
        self.done += steps

    # --- data -----------------------------------------------------------------------------
    def simulate(self, name: str, scanner: int, subjects: int, seed: int) -> Path:
        from ..data.simulator import simulate_cohort

        folder = self.work / "data" / name / f"scanner{scanner}"
        if simulated_cohort_ready(folder, self.plan.simulate_mode, seed, subjects):
            return folder
        simulate_cohort(self.work / "data" / name, scanners=[scanner], subjects=subjects, seed=seed,
                        mode=self.plan.simulate_mode, jobs=self.plan.jobs, overwrite=True, resume=True,
                        progress=self.progress, cancel=self.cancel)
        return folder

    def split_target(self, folder: Path, scanner: int) -> tuple:
        """Link the first train+val subjects into a fine-tuning cohort, the next test ones into a test cohort."""
        cut = self.plan.target_train + self.plan.target_val
        return split_cohort(folder, cut, self.work / "cohorts" / f"scanner{scanner}-finetune",
                            self.work / "cohorts" / f"scanner{scanner}-test")

    # --- training in fresh processes --------------------------------------------------------
    def _train(self, command: str, out: Path, arguments: List[str], overrides: Dict[str, float]) -> dict:
        options = [f"--{key.replace('_', '-')}={value}" for key, value in overrides.items()]
        return train_in_child(command, out, [*arguments, "--seed", str(self.plan.seed), "--device",
                                             self.plan.device, *options], self.cancel)

    def pretrain(self, source: Path) -> dict:
        overrides = dict(val_subjects=self.plan.source_val, **self.plan.pretrain)
        return self._train("pretrain", self.base, ["--cohort", str(source), "--backbone", self.plan.backbone,
                                                   "--preset", self.plan.preset], overrides)

    def model(self, scanner: int, method: str, lr: float) -> Path:
        return self.models / self.plan.model_file(scanner, method, lr)

    def finetune(self, scanner: int, method: str, cohort: Path, lr: float) -> dict:
        overrides = dict(val_subjects=self.plan.target_val, **self.plan.finetune, lr=lr)
        return self._train("finetune", self.model(scanner, method, lr),
                           ["--base", str(self.base), "--cohort", str(cohort), "--peft", method], overrides)


def _check_base(base: Path, plan: BenchPlan) -> None:
    """Refuse (one line) a ``--base`` that is not a base model of the plan's backbone and preset."""
    from ..peft.base_files import BASE_FORMAT, BASE_FORMAT_VERSION
    from ..peft.safetensors_io import file_format, read_metadata

    if file_format(base) != BASE_FORMAT:
        raise PetiteError(f"{base}: --base must be a base model file (from 'petite pretrain')")
    meta = read_metadata(base, BASE_FORMAT, BASE_FORMAT_VERSION)
    if (meta.get("backbone"), meta.get("preset")) != (plan.backbone, plan.preset):
        raise PetiteError(f"{base}: is a {meta.get('backbone')} ({meta.get('preset')}) base model, not "
                          f"{plan.backbone} ({plan.preset}) as the benchmark asks")


def validation_curve(training: dict) -> List[list]:
    """``[[epoch, validation PSNR (dB)], ...]`` of a fine-tuning run's recorded history."""
    return [[entry["epoch"], entry["val_psnr"]] for entry in training.get("history", []) if "val_psnr" in entry]


def choose_learning_rate(runs: Dict[float, dict]) -> tuple:
    """Pick the run of a learning-rate sweep with the best validation PSNR.

    runs: ``{peak learning rate: training record of the run}`` (the ``training`` metadata of
    its output file) in sweep order; the earlier rate wins a tie, and a run without a finite
    validation PSNR never wins unless all are so. Returns ``(chosen rate, sweep)``: per run its
    rate, best validation PSNR (dB), best epoch, epochs run of the budget, wall seconds and
    validation curve. Only validation subjects enter the choice.
    """
    sweep = []
    for lr, training in runs.items():
        curve = validation_curve(training)
        values = [psnr for _, psnr in curve if psnr == psnr and abs(psnr) != float("inf")]
        sweep.append({"lr": lr, "best_val_psnr": max(values) if values else None,
                      "best_epoch": training.get("best_epoch"), "epochs_run": training.get("epochs"),
                      "epochs_budget": training.get("settings", {}).get("epochs"),
                      "seconds": training.get("wall_seconds"), "curve": curve})
    scored = [entry for entry in sweep if entry["best_val_psnr"] is not None]
    chosen = max(scored, key=lambda e: e["best_val_psnr"]) if scored else sweep[0]
    return chosen["lr"], sweep


def _method_row(scored: dict, training: dict, process: dict) -> dict:
    row = {key: scored["mean"][key] for key in METRIC_KEYS if key in scored["mean"]}
    row["sd"] = {key: scored["sd"][key] for key in METRIC_KEYS if key in scored["sd"]}
    row["inference_seconds"] = scored["seconds"]
    row.update(percent=training.get("percent"), seconds=training.get("wall_seconds"),
               train_seconds=training.get("train_seconds"), step_seconds=training.get("step_seconds"),
               cpu_seconds=training.get("cpu_seconds"),
               peak_mem_mb=training.get("peak_mem_mb"), peak_rss_mb=training.get("peak_rss_mb"),
               peak_mem_kind=training.get("peak_mem_kind"), epochs=training.get("epochs"),
               best_epoch=training.get("best_epoch"), spec=training.get("spec"), **process)
    row["curve"] = validation_curve(training)
    return row


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


# The benchmark's targets (PETITE against the short scan, Full-FT and No-FT).
TARGET_GAIN_OVER_INPUT_DB = 1.0  # PETITE's head PSNR above the short scan's
TARGET_RECOVERY = 0.95  # share of Full-FT's PSNR gain over No-FT that PETITE recovers
TARGET_MEMORY_RATIO = 0.5  # PETITE's fine-tuning peak memory / Full-FT's, at most
TARGET_TIME_RATIO = 0.6  # PETITE's fine-tuning time / Full-FT's, at most (CPU time where both have it, else wall)


INPUT_COMPARISONS = ("psnr", "ssim", "psnr_truth", "ssim_truth")  # every model must beat the short scan in these


def target_checks(methods: dict, source: dict, statistics: Optional[dict] = None) -> dict:
    """The benchmark's targets, measured (values) and met or not (``*_ok``); ``statistics``
    (:func:`method_statistics`) adds the checks on paired differences."""
    input_row, noft, full, petite = (methods.get(k, {}) for k in ("input", "no-ft", "full", "petite"))
    checks = {}
    if petite and input_row:
        checks["petite_minus_input_psnr_db"] = petite["psnr"] - input_row["psnr"]
        checks["petite_minus_input_psnr_db_ok"] = checks["petite_minus_input_psnr_db"] >= TARGET_GAIN_OVER_INPUT_DB
        checks["petite_ssim_above_input_ok"] = petite["ssim"] > input_row["ssim"]
    if source:
        checks["source_base_minus_input_psnr_db"] = source["base"]["psnr"] - source["input"]["psnr"]
        checks["source_base_beats_input_ok"] = checks["source_base_minus_input_psnr_db"] > 0
    if petite and full and noft:
        gain = full["psnr"] - noft["psnr"]
        checks["petite_recovery_of_full_gain"] = _ratio(petite["psnr"] - noft["psnr"], gain)
        checks["petite_recovery_ok"] = gain > 0 and checks["petite_recovery_of_full_gain"] >= TARGET_RECOVERY
        checks["petite_over_full_peak_mem"] = _ratio(petite.get("peak_mem_mb"), full.get("peak_mem_mb"))
        checks["petite_over_full_wall_time"] = _ratio(petite.get("seconds"), full.get("seconds"))
        checks["petite_over_full_train_time"] = _ratio(petite.get("train_seconds"), full.get("train_seconds"))
        checks["petite_over_full_cpu_time"] = _ratio(petite.get("cpu_seconds"), full.get("cpu_seconds"))
        checks["petite_memory_ok"] = (checks["petite_over_full_peak_mem"] or 9) <= TARGET_MEMORY_RATIO
        # CPU time does not count a pause or a busy machine; runs trained before it was recorded have wall time only
        time_ratio = checks["petite_over_full_cpu_time"] or checks["petite_over_full_wall_time"]
        checks["petite_time_ok"] = (time_ratio or 9) <= TARGET_TIME_RATIO
    if noft:
        peft = [m for m in methods if m not in ("input", "no-ft", "full")]
        checks["peft_methods_below_no_ft"] = [m for m in peft if methods[m]["psnr"] <= noft["psnr"]]
        checks["every_peft_beats_no_ft_ok"] = not checks["peft_methods_below_no_ft"]
    if input_row:
        checks["models_not_above_input"] = [f"{name} ({key})" for name, row in methods.items() if name != "input"
                                            for key in INPUT_COMPARISONS if key in input_row and key in row
                                            and not row[key] > input_row[key]]
        checks["every_model_beats_input_ok"] = not checks["models_not_above_input"]
    if statistics and noft:
        peft = [m for m in methods if m not in ("input", "no-ft", "full")]
        lower = {m: (statistics.get(f"{m}_vs_no-ft") or {}).get("ci95", [None])[0] for m in peft}
        checks["peft_methods_not_significantly_above_no_ft"] = [m for m, low in lower.items() if low is None or low <= 0]
        checks["every_peft_significantly_above_no_ft_ok"] = not checks["peft_methods_not_significantly_above_no_ft"]
    if statistics and statistics.get("petite_vs_full"):
        deficit = statistics["petite_vs_full"]
        checks["petite_not_significantly_below_full_ok"] = not (deficit["significant"] and deficit["mean"] < 0)
    checks.update(regional_targets(methods))
    return checks


def _statistics_lines(statistics: dict) -> List[str]:
    lines = []
    for name, value in statistics.items():
        if value is None:
            continue
        mark = " (significant, p < 0.05)" if value["significant"] else ""
        lines.append(f"- {name.replace('_vs_', ' - ')}: {value['mean']:+.3f} dB, 95 % CI "
                     f"[{value['ci95'][0]:+.3f}, {value['ci95'][1]:+.3f}], Wilcoxon p = {value['wilcoxon_p']:.3g}, "
                     f"n = {value['n']}{mark}")
    return lines


def sweep_lines(methods: dict) -> List[str]:
    """Markdown lines: the learning-rate sweep of every fine-tuned method in ``methods`` (a
    benchmark target's rows), with each run's best validation PSNR and the kept rate; [] when
    no row holds a sweep."""
    rows = [(name, row) for name, row in methods.items() if row.get("sweep")]
    if not rows:
        return []
    lines = ["Learning rates (best validation PSNR in dB, best epoch / epochs run; the kept run in bold):", "",
             "| method | Table 3 | runs | kept |", "|---|---|---|---|"]
    for name, row in rows:
        runs = []
        for entry in row["sweep"]:
            value = "-" if entry["best_val_psnr"] is None else f"{entry['best_val_psnr']:.3f}"
            text = f"{entry['lr']:g}: {value} ({entry['best_epoch']}/{entry['epochs_run']})"
            runs.append(f"**{text}**" if entry["lr"] == row["lr"] else text)
        lines.append(f"| {name} | {row['lr_table3']:g} | {'; '.join(runs)} | {row['lr']:g} |")
    return lines


def _sessions_text(sessions: List[dict]) -> str:
    """How the total wall time was made: `` (one session; ...)`` or, for a run resumed from its
    ledger, every session's machine, minutes and the runs it added."""
    reused = "models found finished in the work folder are reused, not timed"
    if len(sessions) < 2:
        return f" ({reused})"
    parts = [f"{number}: {s['machine']['device']} on {s['machine']['platform']}, {s['wall_seconds'] / 60:.1f} min, "
             f"{s['runs']} run(s)" for number, s in enumerate(sessions, 1)]
    return f" over {len(sessions)} sessions resumed from the benchmark's ledger ({'; '.join(parts)}; {reused})"


def bench_markdown(result: dict) -> str:
    """The benchmark's markdown report: configuration, then per target scanner its table, the
    paired statistics and the target checks."""
    config = result["config"]
    targets = config.get("target_scanners", [config.get("main_target")])
    lines = [f"# PETITE benchmark: {config['backbone']} ({config['preset']} preset"
             f"{', quick' if config['quick'] else ''})", "",
             f"Scanner {config['source_scanner']} -> scanner(s) {', '.join(map(str, targets))}; simulation "
             f"{config['simulate_mode']} mode; {config['target_train']} fine-tuning subjects (+ "
             f"{config['target_val']} for validation) and {len(result['test_subjects'])} held-out test subjects per "
             f"target; device {result['machine']['device']}; total {result['wall_seconds'] / 60:.1f} min"
             f"{_sessions_text(result.get('sessions') or [])}." + (f" Base model given with --base: {config['base']}."
                                                                   if config.get("base") else ""), "",
             "Metrics against the long scan on held-out subjects (mean ± sd): PSNR/SSIM/NRMSE inside the "
             "head, and over the whole volume; 'PSNR vs truth' against the scanner's noise-free image. 'train s' "
             f"and 'peak MiB' are the fine-tuning wall time and peak memory ({result['memory_note']})."]
    if result.get("command"):
        lines += ["", f"Made by `{result['command']}`."]
    source = result.get("source_validation")
    if source and source.get("base"):
        lines += ["", f"Source scanner validation (base model vs its input): PSNR {source['base']['psnr']:.3f} "
                      f"vs {source['input']['psnr']:.3f} dB, SSIM {source['base']['ssim']:.4f} vs "
                      f"{source['input']['ssim']:.4f} (head-masked)."]
    by_target = result.get("by_target") or {str(targets[0]): result}
    for scanner, entry in by_target.items():
        lines += ["", f"## Target scanner {scanner}", "", bench_table(entry), ""] + sweep_lines(entry["methods"])
        lines += ["", "Paired differences of head PSNR:", ""] + _statistics_lines(entry.get("statistics", {}))
        lines += ["", "Target checks:", ""]
        for key, value in entry["targets"].items():
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"- {key}: {text}")
    return "\n".join(lines) + "\n"


def method_statistics(methods: dict) -> dict:
    """Paired head-PSNR differences (:func:`.statistics.paired_difference`) on the test subjects:
    PETITE vs Full-FT, PETITE vs No-FT, every fine-tuned method vs No-FT, No-FT vs input."""
    from .statistics import paired_difference

    def per_subject(name):
        return methods[name]["per_subject_psnr"]

    pairs = [("petite", "full"), ("petite", "no-ft"), ("no-ft", "input")]
    pairs += [(m, "no-ft") for m in methods if m not in ("input", "no-ft", "petite")]
    return {f"{a}_vs_{b}": paired_difference(per_subject(a), per_subject(b))
            for a, b in pairs if a in methods and b in methods}


def _score(bench: "_Bench", test_subjects: list, torch_device, name: str, model: Optional[Path]) -> dict:
    """evaluate_models on a target's held-out ``test_subjects``: the input and, as ``name``, the
    base with ``model`` (a fine-tuned model file; None: the base alone, No-FT)."""
    loaders = {name: lambda: load_for_inference(bench.base, model, torch_device)}
    return evaluate_models(test_subjects, loaders, device=torch_device, progress=bench.progress, cancel=bench.cancel)


def run_order(rates: Dict[str, List[float]]) -> List[tuple]:
    """The (method, peak learning rate) runs of one target in the order they are trained: those
    of :data:`FIRST_METHODS` first, then the others, each method's rates in the order given."""
    first = [m for m in FIRST_METHODS if m in rates] + [m for m in rates if m not in FIRST_METHODS]
    return [(method, lr) for method in first for lr in rates[method]]


def training_passes(plan: BenchPlan) -> List[tuple]:
    """The order in which the targets' methods are trained: [(scanner, methods)]. First the main
    target's methods of :data:`FIRST_METHODS` and the secondary ones (whose rates the other
    targets need), then every other target's, then the main target's remaining methods; so a
    benchmark spanning sessions finishes the per-target comparison of its targets first. A
    pass may be empty."""
    main, others = plan.target_scanners[0], plan.target_scanners[1:]
    needed = set(FIRST_METHODS) | {m for k in others for m in plan.methods_for(k)}
    early = tuple(m for m in plan.methods_for(main) if m in needed)
    late = tuple(m for m in plan.methods_for(main) if m not in needed)
    return [(main, early), *((k, plan.methods_for(k)) for k in others), (main, late)]


@dataclass
class _Target:
    """One target's fine-tuning cohort and held-out subjects (None until simulated)."""

    scanner: int
    finetune_cohort: Optional[Path] = None
    test_subjects: Optional[list] = None


def _prepare_target(bench: "_Bench", target: _Target, rates: Dict[str, List[float]], torch_device) -> None:
    """Simulate and split one target and score the input and No-FT on its held-out subjects
    (two steps), unless the ledger holds every run of ``rates`` {method: [peak learning rates]}
    and the scores already (then all its steps are reported at once and nothing is simulated).
    A ledger run that trained another spec than its method means now is refused."""
    plan, ledger, scanner = bench.plan, bench.ledger, target.scanner
    runs = run_order(rates)
    for method, lr in runs:
        _check_run_spec(ledger, scanner, method, lr, plan)
    if ledger.baseline(scanner) is not None and all(ledger.run(scanner, m, lr) for m, lr in runs):
        bench.step(f"scanner {scanner}: every run and score is in the ledger {ledger.path.name}", 2 + len(runs))
        return
    subjects = plan.target_train + plan.target_val + plan.target_test
    bench.step(f"simulate {subjects} other subjects on scanner {scanner} ({plan.simulate_mode})")
    folder = bench.simulate("target", scanner, subjects, plan.target_seed)
    target.finetune_cohort, test_cohort = bench.split_target(folder, scanner)
    target.test_subjects = list(load_cohort(test_cohort).subjects)
    bench.step(f"score the input and No-FT on scanner {scanner}'s held-out subjects")
    if ledger.baseline(scanner) is None:
        ledger.set_baseline(scanner, _score(bench, target.test_subjects, torch_device, "no-ft", None))


def _run_target(bench: "_Bench", target: _Target, rates: Dict[str, List[float]], torch_device) -> None:
    """Fine-tune and score the runs of ``rates`` {method: [peak learning rates]} of one prepared
    target that its ledger lacks, each scored right after its training on the target's held-out
    subjects; the ledger is saved after every step. Nothing to do (no step reported) for a
    target :func:`_prepare_target` found complete in the ledger."""
    if target.test_subjects is None:
        return
    ledger, scanner = bench.ledger, target.scanner
    finetune_cohort, test_subjects = target.finetune_cohort, target.test_subjects
    for method, lr in run_order(rates):
        done = ledger.run(scanner, method, lr) is not None
        bench.step(f"fine-tune {method} on scanner {scanner} (peak learning rate {lr:g}) and score it"
                   + (f": in the ledger {ledger.path.name}" if done else ""))
        if not done:
            process = bench.finetune(scanner, method, finetune_cohort, lr)
            model = bench.model(scanner, method, lr)
            scored = _score(bench, test_subjects, torch_device, method, model)
            ledger.add_run(scanner, method, lr, describe_weights(model)["training"], process, scored[method])


def _check_run_spec(ledger: BenchLedger, scanner: int, method: str, lr: float, plan: BenchPlan) -> None:
    """Refuse (one-line PetiteError naming the ledger) a ledger run of ``method`` that trained
    another PEFT spec than ``method`` means now (e.g. a preset changed since)."""
    run = ledger.run(scanner, method, lr)
    if run is None:
        return
    spec = parse_spec(method, plan.backbone, plan.preset).canonical  # "full" for Full-FT
    recorded = run["training"].get("spec")
    if recorded != spec:
        raise PetiteError(f"{ledger.path}: its {method} run on scanner {scanner} at {lr:g} trained '{recorded}', "
                          f"but {method} is now '{spec}'; give another --ledger, or remove that run")


def _target_result(bench: "_Bench", scanner: int, chosen: Dict[str, tuple]) -> dict:
    """One target's part of the result, from the ledger alone: the input, No-FT and every
    method's kept run (``chosen``: {method: (lr, sweep)}) on its held-out subjects, with their
    paired statistics. The held-out scores of the runs not kept are never read."""
    baseline = bench.ledger.baseline(scanner)
    scored = dict(baseline)
    methods = {"input": _method_row(baseline["input"], {}, {}), "no-ft": _method_row(baseline["no-ft"], {}, {})}
    for method, (lr, sweep) in chosen.items():
        run = bench.ledger.run(scanner, method, lr)
        scored[method] = run["scores"]
        methods[method] = _method_row(run["scores"], run["training"], run["process"])
        methods[method].update(lr=lr, lr_table3=bench.plan.table3_lr(method), sweep=sweep,
                               sweep_seconds=sum(entry["seconds"] or 0 for entry in sweep))
    for name in methods:
        methods[name]["per_subject_psnr"] = {s: m["psnr"] for s, m in scored[name]["per_subject"].items()}
    return {"methods": methods, "statistics": method_statistics(methods),
            "test_subjects": list(baseline["input"]["per_subject"])}


def _choose(bench: "_Bench", scanner: int, rates: Dict[str, List[float]]) -> Dict[str, tuple]:
    """{method: (kept rate, sweep)} of one target, chosen on validation PSNR alone from the
    training records in the ledger (:func:`choose_learning_rate`)."""
    return {method: choose_learning_rate({lr: bench.ledger.run(scanner, method, lr)["training"] for lr in lrs})
            for method, lrs in rates.items()}


def ledger_config(plan: BenchPlan) -> dict:
    """What a ledger must share with the plan that resumes from it: the plan without device, jobs
    and the base's path (the base is compared by its SHA-256)."""
    return {key: value for key, value in asdict(plan).items() if key not in ("device", "jobs", "base")}


def curves_file(out) -> Path:
    """The validation-curve figure written beside a benchmark's RESULT.json: RESULT-curves.png."""
    return Path(out).with_name(Path(out).stem + "-curves.png")


def run_bench(plan: BenchPlan, out, work=None, overwrite: bool = False,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
              command: Optional[str] = None, ledger=None) -> dict:
    """Run the benchmark of ``plan``; write ``out`` (JSON) and OUT.md, OUT.png, OUT-curves.png
    beside it. ``command``: the command line that asked for it, recorded in the result.

    work: folder for simulated data, models and checkpoints (default ``OUT`` without suffix +
    ``_work``); reused by a rerun (and compatible with the model zoo's work folder). ledger: the
    benchmark's ledger (default ``<OUT stem>.ledger.json``, :mod:`.bench_ledger`), from which a
    rerun resumes without the work folder. Returns the result dict: ``by_target`` ({scanner:
    {methods, statistics, targets, test_subjects}}), ``methods``/``targets``/``statistics``/
    ``test_subjects`` of the first target, config, machine (this session's), sessions (every
    session's machine, wall seconds and runs added), source_validation, wall_seconds (all
    sessions, summed).
    """
    from ..extras import require

    require("sim", "petite bench")
    out = Path(out)
    if not out.name.endswith(".json"):
        raise PetiteError(f"{out}: the benchmark result must be a .json file")
    outputs = [out, out.with_suffix(".md"), out.with_suffix(".png"), curves_file(out)]
    if not overwrite and any(p.exists() for p in outputs):
        raise PetiteError(f"{next(p for p in outputs if p.exists())}: already exists (use --overwrite)")
    torch_device = select_device(plan.device)
    book = BenchLedger.open(ledger or ledger_file(out), ledger_config(plan))
    if plan.base:
        _check_base(Path(plan.base), plan)
        book.bind_base(base_model_sha256(plan.base))
    work = Path(work) if work else out.with_name(out.stem + "_work")
    work.mkdir(parents=True, exist_ok=True)
    machine = machine_record(torch_device)
    book.start_session(machine)
    bench = _Bench(plan, work, book, progress, cancel)
    if not plan.base and book.base_sha256 and not bench.base.exists():
        raise PetiteError(f"{book.path}: its runs were fine-tuned from a base model (SHA-256 "
                          f"{book.base_sha256[:12]}...) that {bench.base} no longer holds; give that base with "
                          "--base (a new pre-training would not match)")

    if plan.base:
        bench.step(f"use the base model {plan.base} (no source simulation, no pre-training)")
    else:
        bench.step(f"simulate {plan.source_subjects} subjects on scanner {plan.source_scanner} ({plan.simulate_mode})")
        source = bench.simulate("source", plan.source_scanner, plan.source_subjects, plan.source_seed)
        bench.step(f"pre-train {plan.backbone} ({plan.preset}) on scanner {plan.source_scanner}")
        bench.pretrain(source)
        book.bind_base(base_model_sha256(bench.base))
    main_scanner = plan.target_scanners[0]
    rates = {main_scanner: {method: plan.sweep(method) for method in plan.methods_for(main_scanner)}}
    targets: Dict[int, _Target] = {}
    for scanner, methods in training_passes(plan):
        if scanner not in rates:  # another target: the rates chosen on the main one
            chosen = _choose(bench, main_scanner, {m: rates[main_scanner][m] for m in methods})
            rates[scanner] = {method: [lr] for method, (lr, _) in chosen.items()}
        if scanner not in targets:
            targets[scanner] = _Target(scanner)
            _prepare_target(bench, targets[scanner], rates[scanner], torch_device)
        _run_target(bench, targets[scanner], {m: rates[scanner][m] for m in methods}, torch_device)
    by_target = {str(scanner): _target_result(bench, scanner, _choose(bench, scanner, rates[scanner]))
                 for scanner in plan.target_scanners}

    base_training = describe_weights(bench.base)["training"]
    source_validation = {"base": base_training.get("val_metrics", {}),
                         "input": base_training.get("val_input_metrics", {}),
                         "subjects": base_training.get("val_subjects", []),
                         "pretrain_seconds": base_training.get("wall_seconds"),
                         "pretrain_epochs": base_training.get("epochs"),
                         "base_file": str(bench.base), "base_sha256": base_model_sha256(bench.base),
                         "best_epoch": base_training.get("best_epoch")}
    source_checked = source_validation if source_validation["base"] else {}
    for entry in by_target.values():
        entry["targets"] = target_checks(entry["methods"], source_checked, entry["statistics"])
    main = by_target[str(plan.target_scanners[0])]
    book.save()
    result = {"by_target": by_target, "methods": main["methods"], "statistics": main["statistics"],
              "targets": main["targets"], "test_subjects": main["test_subjects"],
              "config": {**asdict(plan), "methods": list(plan.methods), "target_scanners": list(plan.target_scanners),
                         "main_target": plan.target_scanners[0]},
              "machine": machine, "sessions": book.sessions(),
              "source_validation": source_validation,
              "memory_note": ("CUDA peak allocated" if torch_device.type == "cuda" else
                              "CPU peak RSS above the RSS at the start of training, one fresh process per run"),
              "wall_seconds": book.wall_seconds(), "command": command}
    write_json(out, result, overwrite=True)
    atomic_write_bytes(out.with_suffix(".md"), bench_markdown(result).encode(), overwrite=True)
    atomic_write_bytes(out.with_suffix(".png"), bench_plot_png(result), overwrite=True)
    atomic_write_bytes(curves_file(out), bench_curves_png(result), overwrite=True)
    report(progress, "bench", bench.steps, bench.steps, "done")
    return result
