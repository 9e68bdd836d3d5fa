"""``petite bench``: the paper's protocol end to end on simulated data.

1. simulate a source cohort (scanner 1) and, with another seed (other subjects), a target
   cohort (default scanner 4), in full physics mode or the fast surrogate (recorded);
2. pre-train a base model on the source cohort (``petite pretrain``);
3. split the target cohort into fine-tuning subjects (10 training + validation) and held-out
   test subjects, and fine-tune every method of :data:`BENCH_METHODS` on the former, each in a
   fresh process so that its wall time and peak memory are measured in isolation;
4. score the input (short scan), the base alone (No-FT) and every fine-tuned model on the
   held-out subjects (:mod:`.evaluation`), and write RESULT.json, RESULT.md and RESULT.png.

Every step leaves its files in a work folder; a rerun reuses finished steps and resumes an
interrupted training from its checkpoint, so a long benchmark survives interruptions.
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
from .checkpoint import checkpoint_folder
from .devices import describe_device, select_device
from .evaluation import evaluate_models
from ..peft import base_model_sha256
from .models import describe_weights, load_for_inference
from .reports import bench_plot_png, bench_table, write_json

BENCH_METHODS = ("full", "layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "petite")
METRIC_KEYS = ("psnr", "ssim", "nrmse", "psnr_whole", "ssim_whole", "nrmse_whole",
               "psnr_truth", "ssim_truth", "nrmse_truth") + REGIONAL_KEYS


@dataclass(frozen=True)
class BenchPlan:
    """What a benchmark runs: data sizes, simulation mode and the training overrides.

    source_subjects: simulated on the source scanner (split into training/validation by
    ``petite pretrain``, ``source_val`` of them for validation); target subjects:
    ``target_train`` + ``target_val`` fine-tune (``petite finetune`` splits them), then
    ``target_test`` held out for the scores. pretrain/finetune: TrainSettings overrides.
    base: an existing base-model file to fine-tune instead of pre-training one (then no source
    cohort is simulated; the source validation is the one recorded in the base's metadata).
    """

    backbone: str
    preset: str
    quick: bool
    seed: int
    device: str
    simulate_mode: str
    source_scanner: int
    target_scanner: int
    source_subjects: int
    source_val: int
    target_train: int
    target_val: int
    target_test: int
    jobs: int
    pretrain: Dict[str, float] = field(default_factory=dict)
    finetune: Dict[str, float] = field(default_factory=dict)
    methods: tuple = BENCH_METHODS
    base: Optional[str] = None


def make_plan(backbone: str, preset: str, quick: bool = False, seed: int = 0, device: str = "auto",
              target_scanner: int = 4, simulate_mode: Optional[str] = None, jobs: int = 1,
              methods=BENCH_METHODS, base: Optional[str] = None) -> BenchPlan:
    """The benchmark plan: ``quick`` (under 20 minutes on 2 CPU cores with the cpu preset) or full.

    Quick: fast surrogate simulation, 8 source and 15 target subjects (10 train, 2 val, 3 test),
    short trainings (10 pre-training epochs of 4 steps, 3 fine-tuning epochs of 4 steps). Full: physics simulation, the paper's sizes where affordable (cpu preset:
    30 source subjects with 6 for validation; paper preset: 45 with 15), 10 target training
    subjects, 5 (cpu) or 15 (paper) target validation and 10 test subjects, default epochs.
    """
    unknown = [m for m in methods if m not in BENCH_METHODS]
    if unknown:
        raise PetiteError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(BENCH_METHODS)})")
    if quick:
        return BenchPlan(backbone, preset, True, seed, device, simulate_mode or "fast", 1, target_scanner,
                         source_subjects=8, source_val=2, target_train=10, target_val=2, target_test=3,
                         jobs=jobs, methods=tuple(methods), base=base,
                         pretrain=dict(epochs=10, crops_per_subject=4, val_every=5),
                         finetune=dict(epochs=3, crops_per_subject=2, val_every=3))
    paper = preset == "paper"
    return BenchPlan(backbone, preset, False, seed, device, simulate_mode or "full", 1, target_scanner,
                     source_subjects=45 if paper else 30, source_val=15 if paper else 6, target_train=10,
                     target_val=15 if paper else 5, target_test=10, jobs=jobs, methods=tuple(methods),
                     base=base)


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


def run_child(arguments: List[str], cancel: Optional[CancelToken] = None) -> dict:
    """Run ``python -m PETITELib.cli ARGUMENTS`` in a fresh process (terminated on cancel);
    returns its peak RSS (MiB) as ``process_peak_rss_mb``; PetiteError when it fails."""
    command = [sys.executable, "-m", "PETITELib.cli", *arguments]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if cancel is not None and cancel.cancelled:
                process.terminate()
            time.sleep(0.2)
    except BaseException:
        process.terminate()
        process.wait()
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    check_cancel(cancel)
    if process.returncode != 0:
        raise PetiteError(f"petite {arguments[0]} failed (exit {process.returncode}): {' '.join(command)}")
    return {"process_peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1)}


def train_in_child(command: str, out: Path, arguments: List[str], cancel: Optional[CancelToken] = None) -> dict:
    """``petite COMMAND ARGUMENTS --out OUT`` in a fresh process, unless OUT is already finished
    (exists without a checkpoint folder: returns {}); resumes from OUT's checkpoint when there is one."""
    if out.exists() and not checkpoint_folder(out).exists():
        return {}
    resume = ["--resume"] if (checkpoint_folder(out) / "state.json").exists() else ["--overwrite"]
    return run_child([command, *arguments, "--out", str(out), *resume], cancel)


class _Bench:
    """One benchmark run in a work folder (see the module docstring)."""

    def __init__(self, plan: BenchPlan, work: Path, progress, cancel) -> None:
        self.plan, self.work, self.progress, self.cancel = plan, work, progress, cancel
        self.steps = 4 + len(plan.methods)
        self.done = 0
        self.models = work / "models"
        self.base = Path(plan.base) if plan.base else self.models / "base.safetensors"

    def step(self, message: str) -> None:
        check_cancel(self.cancel)
        report(self.progress, "bench", self.done, self.steps, message)
        sys.stderr.write(f"petite bench [{self.done + 1}/{self.steps}]: {message}\n")
        self.done += 1

    # --- data -----------------------------------------------------------------------------
    def simulate(self, name: str, scanner: int, subjects: int, seed: int) -> Path:
        from ..data.simulator import simulate_cohort

        folder = self.work / "data" / name / f"scanner{scanner}"
        if simulated_cohort_ready(folder, self.plan.simulate_mode, seed, subjects):
            return folder
        simulate_cohort(self.work / "data" / name, scanners=[scanner], subjects=subjects, seed=seed,
                        mode=self.plan.simulate_mode, jobs=self.plan.jobs, overwrite=True,
                        progress=self.progress, cancel=self.cancel)
        return folder

    def split_target(self, folder: Path) -> tuple:
        """Link the first train+val subjects into a fine-tuning cohort, the rest into a test cohort."""
        cut = self.plan.target_train + self.plan.target_val
        return split_cohort(folder, cut, self.work / "cohorts" / "target-finetune",
                            self.work / "cohorts" / "target-test")

    # --- training in fresh processes --------------------------------------------------------
    def _train(self, command: str, out: Path, arguments: List[str], overrides: Dict[str, float]) -> dict:
        options = [f"--{key.replace('_', '-')}={value}" for key, value in overrides.items()]
        return train_in_child(command, out, [*arguments, "--seed", str(self.plan.seed), "--device",
                                             self.plan.device, *options], self.cancel)

    def pretrain(self, source: Path) -> dict:
        overrides = dict(val_subjects=self.plan.source_val, **self.plan.pretrain)
        return self._train("pretrain", self.base, ["--cohort", str(source), "--backbone", self.plan.backbone,
                                                   "--preset", self.plan.preset], overrides)

    def finetune(self, method: str, cohort: Path) -> dict:
        overrides = dict(val_subjects=self.plan.target_val, **self.plan.finetune)
        return self._train("finetune", self.models / f"{method}.safetensors",
                           ["--base", str(self.base), "--cohort", str(cohort), "--peft", method], overrides)


def _check_base(base: Path, plan: BenchPlan) -> None:
    """Refuse (one line) a ``--base`` that is not a base model of the plan's backbone and preset."""
    from ..peft.base_files import BASE_FORMAT_VERSION
    from ..peft.safetensors_io import read_metadata
    from .models import BASE_FORMAT, file_format

    if file_format(base) != BASE_FORMAT:
        raise PetiteError(f"{base}: --base must be a base model file (from 'petite pretrain')")
    meta = read_metadata(base, BASE_FORMAT, BASE_FORMAT_VERSION)
    if (meta.get("backbone"), meta.get("preset")) != (plan.backbone, plan.preset):
        raise PetiteError(f"{base}: is a {meta.get('backbone')} ({meta.get('preset')}) base model, not "
                          f"{plan.backbone} ({plan.preset}) as the benchmark asks")


def _method_row(scored: dict, training: dict, process: dict) -> dict:
    row = {key: scored["mean"][key] for key in METRIC_KEYS if key in scored["mean"]}
    row["sd"] = {key: scored["sd"][key] for key in METRIC_KEYS if key in scored["sd"]}
    row["inference_seconds"] = scored["seconds"]
    row.update(percent=training.get("percent"), seconds=training.get("wall_seconds"),
               train_seconds=training.get("train_seconds"), step_seconds=training.get("step_seconds"),
               peak_mem_mb=training.get("peak_mem_mb"), peak_rss_mb=training.get("peak_rss_mb"),
               peak_mem_kind=training.get("peak_mem_kind"), epochs=training.get("epochs"),
               best_epoch=training.get("best_epoch"), spec=training.get("spec"), **process)
    return row


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def target_checks(methods: dict, source: dict) -> dict:
    """The benchmark's targets, measured (values) and met or not (``*_ok``)."""
    input_row, noft, full, petite = (methods.get(k, {}) for k in ("input", "no-ft", "full", "petite"))
    checks = {}
    if petite and input_row:
        checks["petite_minus_input_psnr_db"] = petite["psnr"] - input_row["psnr"]
        checks["petite_minus_input_psnr_db_ok"] = checks["petite_minus_input_psnr_db"] >= 1.0
        checks["petite_ssim_above_input_ok"] = petite["ssim"] > input_row["ssim"]
    if source:
        checks["source_base_minus_input_psnr_db"] = source["base"]["psnr"] - source["input"]["psnr"]
        checks["source_base_beats_input_ok"] = checks["source_base_minus_input_psnr_db"] > 0
    if petite and full and noft:
        gain = full["psnr"] - noft["psnr"]
        checks["petite_recovery_of_full_gain"] = _ratio(petite["psnr"] - noft["psnr"], gain)
        checks["petite_recovery_ok"] = gain > 0 and checks["petite_recovery_of_full_gain"] >= 0.95
        checks["petite_over_full_peak_mem"] = _ratio(petite.get("peak_mem_mb"), full.get("peak_mem_mb"))
        checks["petite_over_full_wall_time"] = _ratio(petite.get("seconds"), full.get("seconds"))
        checks["petite_over_full_train_time"] = _ratio(petite.get("train_seconds"), full.get("train_seconds"))
        checks["petite_memory_ok"] = (checks["petite_over_full_peak_mem"] or 9) <= 0.5
        checks["petite_time_ok"] = (checks["petite_over_full_wall_time"] or 9) <= 0.6
    if noft:
        peft = [m for m in methods if m not in ("input", "no-ft", "full")]
        checks["peft_methods_below_no_ft"] = [m for m in peft if methods[m]["psnr"] <= noft["psnr"]]
        checks["every_peft_beats_no_ft_ok"] = not checks["peft_methods_below_no_ft"]
    checks.update(regional_targets(methods))
    return checks


def bench_markdown(result: dict) -> str:
    """The benchmark's markdown report: configuration line, table, source validation, targets."""
    config = result["config"]
    lines = [f"# PETITE benchmark: {config['backbone']} ({config['preset']} preset"
             f"{', quick' if config['quick'] else ''})", "",
             f"Scanner {config['source_scanner']} -> scanner {config['target_scanner']}; simulation "
             f"{config['simulate_mode']} mode; {config['target_train']} fine-tuning subjects, "
             f"{len(result['test_subjects'])} held-out test subjects; device {result['machine']['device']}; "
             f"total {result['wall_seconds'] / 60:.1f} min (this run; finished steps are reused)."
             + (f" Base model given with --base: {config['base']}." if config.get("base") else ""), "",
             "Metrics against the long scan on held-out subjects (mean ± sd): PSNR/SSIM/NRMSE inside the "
             "head, and over the whole volume. 'train s' and 'peak MiB' are the fine-tuning wall time "
             f"and peak memory ({result['memory_note']}).", "", bench_table(result)]
    source = result.get("source_validation")
    if source:
        lines += ["", f"Source scanner validation (base model vs its input): PSNR {source['base']['psnr']:.3f} "
                      f"vs {source['input']['psnr']:.3f} dB, SSIM {source['base']['ssim']:.4f} vs "
                      f"{source['input']['ssim']:.4f} (head-masked)."]
    lines += ["", "## Targets", ""]
    for key, value in result["targets"].items():
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"- {key}: {text}")
    return "\n".join(lines) + "\n"


def run_bench(plan: BenchPlan, out, work=None, overwrite: bool = False,
              progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None) -> dict:
    """Run the benchmark of ``plan``; write ``out`` (JSON) and OUT.md, OUT.png beside it.

    work: folder for simulated data, models and checkpoints (default ``OUT`` without suffix +
    ``_work``); reused by a rerun. Returns the result dict (see RESULT.json's keys: methods,
    config, machine, source_validation, targets, test_subjects, wall_seconds).
    """
    out = Path(out)
    if not out.name.endswith(".json"):
        raise PetiteError(f"{out}: the benchmark result must be a .json file")
    outputs = [out, out.with_suffix(".md"), out.with_suffix(".png")]
    if not overwrite and any(p.exists() for p in outputs):
        raise PetiteError(f"{next(p for p in outputs if p.exists())}: already exists (use --overwrite)")
    torch_device = select_device(plan.device)
    if plan.base:
        _check_base(Path(plan.base), plan)
    work = Path(work) if work else out.with_name(out.stem + "_work")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bench = _Bench(plan, work, progress, cancel)

    if plan.base:
        bench.step(f"use the base model {plan.base} (no source simulation)")
    else:
        bench.step(f"simulate {plan.source_subjects} subjects on scanner {plan.source_scanner} ({plan.simulate_mode})")
        source = bench.simulate("source", plan.source_scanner, plan.source_subjects, plan.seed)
    bench.step(f"simulate {plan.target_train + plan.target_val + plan.target_test} other subjects on "
               f"scanner {plan.target_scanner} ({plan.simulate_mode})")
    target = bench.simulate("target", plan.target_scanner,
                            plan.target_train + plan.target_val + plan.target_test, plan.seed + 1)
    finetune_cohort, test_cohort = bench.split_target(target)
    if plan.base:
        bench.step("pre-training skipped (--base)")
        processes = {"no-ft": {}}
    else:
        bench.step(f"pre-train {plan.backbone} ({plan.preset}) on scanner {plan.source_scanner}")
        processes = {"no-ft": bench.pretrain(source)}
    for method in plan.methods:
        bench.step(f"fine-tune {method} on scanner {plan.target_scanner}")
        processes[method] = bench.finetune(method, finetune_cohort)
    bench.step("evaluate on held-out subjects")
    test_subjects = list(load_cohort(test_cohort).subjects)
    loaders = {"no-ft": lambda: load_for_inference(bench.base, None, torch_device)}
    for method in plan.methods:
        loaders[method] = (lambda m=method: load_for_inference(bench.base, bench.models / f"{m}.safetensors",
                                                               torch_device))
    scored = evaluate_models(test_subjects, loaders, device=torch_device, progress=progress, cancel=cancel)

    base_training = describe_weights(bench.base)["training"]
    methods = {"input": _method_row(scored["input"], {}, {})}
    methods["no-ft"] = _method_row(scored["no-ft"], {}, {})
    for method in plan.methods:
        training = describe_weights(bench.models / f"{method}.safetensors")["training"]
        methods[method] = _method_row(scored[method], training, processes.get(method, {}))
    source_validation = {"base": base_training.get("val_metrics", {}),
                         "input": base_training.get("val_input_metrics", {}),
                         "subjects": base_training.get("val_subjects", []),
                         "pretrain_seconds": base_training.get("wall_seconds"),
                         "pretrain_epochs": base_training.get("epochs"),
                         "base_file": str(bench.base), "base_sha256": base_model_sha256(bench.base),
                         "best_epoch": base_training.get("best_epoch")}
    result = {"methods": methods, "config": {**asdict(plan), "methods": list(plan.methods)},
              "machine": machine_record(torch_device), "source_validation": source_validation,
              "test_subjects": [s.subject_id for s in test_subjects],
              "memory_note": ("CUDA peak allocated" if torch_device.type == "cuda" else
                              "CPU peak RSS above the RSS at the start of training, one fresh process per run"),
              "wall_seconds": round(time.perf_counter() - started, 1)}
    result["targets"] = target_checks(methods, source_validation if source_validation["base"] else {})
    write_json(out, result, overwrite=True)
    atomic_write_bytes(out.with_suffix(".md"), bench_markdown(result).encode(), overwrite=True)
    atomic_write_bytes(out.with_suffix(".png"), bench_plot_png(result), overwrite=True)
    report(progress, "bench", bench.steps, bench.steps, "done")
    return result
