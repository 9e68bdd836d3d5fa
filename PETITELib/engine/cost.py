"""``petite bench-cost``: what one fine-tuning step of each method costs, each in a fresh process.

For every backbone and method, a child process builds the preset's generator (weights at their
initial values: the cost does not depend on them) and, for CvT-GAN, its discriminator, prepares
them as ``petite finetune`` does (:func:`~.finetuning.prepare_for_finetuning`), and runs the
engine's training step (:mod:`.objectives`, the method's Table-3 optimizer settings) on seeded
random 64^3 crops: ``warmup`` steps, then ``steps`` timed ones. It reports

- ``step_seconds``: the median wall time of a step, and ``forward_seconds``,
  ``backward_seconds``, ``optimizer_seconds``: the medians of its phases;
- ``peak_mem_mb``: on the CPU the peak RSS above the RSS before the model was built (weights,
  gradients, optimizer state, activations, allocator and library buffers), on CUDA
  ``torch.cuda.max_memory_allocated`` (see :mod:`.memory`);
- ``rss_between_steps_mb`` (CPU): the RSS above that baseline after the last timed step, when
  only weights, gradients and optimizer state are live; the rest is memory the allocator kept;
- ``trainable``: trained parameters; ``activations_mb``: what autograd keeps for the backward
  pass of one step (distinct tensors, parameters excluded), in total and by the layer type that
  saved it (``activations_by_layer_mb``), measured in an extra, untimed step;

and the parent adds each method's ratios to Full-FT and the machine (CPU, threads, versions,
load average before and after each child). Results go to a JSON file and a markdown table.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn

from ..errors import PetiteError
from ..progress import ProgressCallback, report
from .devices import describe_device, select_device, training_precision
from .memory import PeakMemory, current_rss_mb

COST_METHODS = ("full", "layernorm", "bitfit", "lora", "adapter", "ssf", "vpt", "gvpt", "fullres", "petite")
PHASES = ("forward", "backward", "optimizer")
RESULT_PREFIX = "PETITE-COST "


@dataclass(frozen=True)
class CostRun:
    """One child's job: ``method`` (a PEFT spec) on ``backbone`` at size ``preset``, ``batch_size``
    crops of 64^3 per step, ``warmup`` + ``steps`` steps, ``threads`` intra-op threads (None:
    torch's default), ``compile``: the training forward through ``torch.compile``,
    ``checkpointing``: recompute the blocks' activations in the backward pass."""

    backbone: str
    preset: str
    method: str
    device: str = "cpu"
    batch_size: int = 6
    steps: int = 20
    warmup: int = 3
    seed: int = 0
    threads: Optional[int] = None
    compile: bool = False
    checkpointing: bool = False


class StepTimer:
    """Phase timer passed to an objective's ``step``: ``timer(phase)`` adds the time since the
    previous mark (or :meth:`start`) to ``phase``; on CUDA it synchronises first."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.phases: Dict[str, float] = {}
        self.last = 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def start(self) -> "StepTimer":
        """Begin a step."""
        self.phases = {}
        self.last = self._now()
        return self

    def __call__(self, phase: str) -> None:
        now = self._now()
        self.phases[phase] = self.phases.get(phase, 0.0) + now - self.last
        self.last = now


def random_crops(generator: torch.Generator, batch_size: int, device: torch.device):
    """A seeded (short, long) pair of (B, 1, 64, 64, 64) float32 batches on ``device``: short
    uniform in [0, 1), long = short + 0.1 x Gaussian noise."""
    short = torch.rand(batch_size, 1, 64, 64, 64, generator=generator)
    long = short + 0.1 * torch.randn(short.shape, generator=generator)
    return short.to(device), long.to(device)


def _layer_name(module: nn.Module) -> str:
    from ..peft.layers import TunedLayer

    return module.base_class.__name__ if isinstance(module, TunedLayer) else type(module).__name__


def saved_activations(models: List[nn.Module], run_step) -> Dict[str, float]:
    """MiB that autograd keeps for the backward pass while ``run_step()`` builds its graph, by
    the type of the innermost module that saved each tensor (``"(no module)"`` outside all);
    each storage counted once, parameters and buffers excluded."""
    stack: List[str] = []
    excluded = {t.untyped_storage().data_ptr() for model in models
                for t in list(model.parameters()) + list(model.buffers())}
    seen: Dict[int, tuple] = {}
    handles = []

    def enter(module, args) -> None:
        stack.append(_layer_name(module))

    def leave(module, args, output) -> None:
        stack.pop()

    for model in models:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded and storage.data_ptr() not in seen:
            seen[storage.data_ptr()] = (stack[-1] if stack else "(no module)", storage.nbytes())
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            run_step()
    finally:
        for handle in handles:
            handle.remove()
    by_layer: Counter = Counter()
    for layer, nbytes in seen.values():
        by_layer[layer] += nbytes / 2**20
    return {layer: round(mib, 1) for layer, mib in by_layer.most_common()}


def measure_step_cost(run: CostRun) -> dict:
    """Measure ``run`` in this process (call it in a fresh one: see :func:`run_cost_bench`)."""
    from ..backbones import BACKBONES, build_backbone, build_discriminator
    from ..peft import count_parameters
    from .finetuning import prepare_for_finetuning
    from .jobs import build_objective, seed_everything
    from .settings import finetune_defaults

    if run.threads:
        torch.set_num_threads(run.threads)
    device = select_device(run.device)
    meter = PeakMemory(device).start()  # the baseline: before the model exists
    seed_everything(run.seed)
    generator = build_backbone(run.backbone, run.preset).to(device)
    discriminator = None
    if BACKBONES[run.backbone].build_discriminator is not None:
        discriminator = build_discriminator(run.backbone, run.preset).to(device)
    spec = prepare_for_finetuning(generator, discriminator, run.method)
    settings = finetune_defaults(run.backbone, run.preset, spec).with_overrides(
        batch_size=run.batch_size, compile=run.compile, checkpointing=run.checkpointing)
    generator.gradient_checkpointing = settings.checkpointing
    objective = build_objective(generator, discriminator, False, settings, run.warmup + run.steps + 1)
    generator.train()
    if discriminator is not None:
        discriminator.eval()
    crops = torch.Generator().manual_seed(run.seed)
    timer = StepTimer(device)
    steps: List[Dict[str, float]] = []
    for index in range(run.warmup + run.steps):
        short, long = random_crops(crops, run.batch_size, device)
        timer.start()
        objective.step(short, long, timer=timer)
        if index >= run.warmup:
            steps.append({**timer.phases, "step": sum(timer.phases.values())})
    memory = meter.summary()
    if device.type == "cpu":  # what stays resident between steps: weights, gradients, optimizer state, allocator
        memory["rss_between_steps_mb"] = round(current_rss_mb() - meter.baseline_mb, 1)
    short, long = random_crops(crops, run.batch_size, device)
    models = [generator] + ([discriminator] if discriminator is not None else [])
    by_layer = saved_activations(models, lambda: objective.step(short, long))
    count = count_parameters(generator)
    median = {key: statistics.median(s[key] for s in steps) for key in ("step",) + PHASES}
    return {"spec": spec.canonical, "step_seconds": round(median["step"], 4),
            **{f"{phase}_seconds": round(median[phase], 4) for phase in PHASES},
            "step_seconds_all": [round(s["step"], 4) for s in steps],
            "peak_mem_mb": memory["peak_mem_mb"], "peak_mem_kind": memory["peak_mem_kind"],
            "peak_mem_isolated": memory["peak_mem_isolated"], "baseline_mem_mb": memory["baseline_mem_mb"],
            "rss_between_steps_mb": memory.get("rss_between_steps_mb"),
            "trainable": count.trainable, "total_parameters": count.total, "percent": round(count.percent, 4),
            "activations_mb": round(sum(by_layer.values()), 1), "activations_by_layer_mb": by_layer,
            "device": describe_device(device), "precision": training_precision(device),
            "threads": torch.get_num_threads(), "compile": run.compile, "checkpointing": run.checkpointing}


def _load_average() -> Optional[List[float]]:
    getloadavg = getattr(os, "getloadavg", None)  # not on Windows
    return [round(v, 2) for v in getloadavg()] if getloadavg else None


def _run_child(run: CostRun) -> dict:
    """:func:`measure_step_cost` in a fresh Python process (OMP threads set to ``run.threads``)."""
    env = dict(os.environ)
    if run.threads:
        env["OMP_NUM_THREADS"] = str(run.threads)
    command = [sys.executable, "-m", "PETITELib.engine.cost", json.dumps(asdict(run))]
    before = _load_average()
    process = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode or not lines:
        tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
        raise PetiteError(f"bench-cost: {run.backbone} {run.method} failed in its process ({tail})")
    return {**json.loads(lines[-1][len(RESULT_PREFIX):]), "load_average_before": before,
            "load_average_after": _load_average()}


def machine_description(device: torch.device) -> dict:
    """The machine a result was measured on: platform, CPU, core count, torch/MONAI/Python/PETITE
    versions, the device, and (where the OS has one) the load average when it was written."""
    import monai

    from .. import __version__

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "torch": torch.__version__, "monai": monai.__version__,
            "petite": __version__, "device": describe_device(device), "load_average": _load_average(),
            "allocator_environment": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "LD_PRELOAD"))}}


def _ratios(methods: Dict[str, dict]) -> None:
    full = methods.get("full")
    if not full:
        return
    for entry in methods.values():
        entry["step_ratio_to_full"] = round(entry["step_seconds"] / full["step_seconds"], 3)
        entry["mem_ratio_to_full"] = round(entry["peak_mem_mb"] / full["peak_mem_mb"], 3)


def run_cost_bench(backbones, preset: str, methods=COST_METHODS, device: str = "cpu",
                   threads: Optional[int] = None, batch_size: int = 6, steps: int = 20, warmup: int = 3,
                   seed: int = 0, compile: bool = False, checkpointing: bool = False, out=None,
                   overwrite: bool = False,
                   progress: Optional[ProgressCallback] = None, command: str = "") -> dict:
    """Measure every method on every backbone, each in a fresh process; write ``out`` (JSON) and
    its markdown table beside it (same name, ``.md``) when given. Returns the result."""
    from .reports import write_json
    from ..nifti_io import atomic_write_bytes

    torch_device = select_device(device)
    for option, value, least in (("--steps", steps, 1), ("--warmup", warmup, 0), ("--batch-size", batch_size, 1),
                                 ("--threads", 1 if threads is None else threads, 1)):
        if value < least:
            raise PetiteError(f"{option} {value}: must be at least {least}")
    unknown = [m for m in methods if m not in COST_METHODS]
    if unknown:
        raise PetiteError(f"--methods: unknown method(s) {', '.join(unknown)} (choose from {', '.join(COST_METHODS)})")
    if out is not None:
        out = Path(out)
        if out.suffix != ".json":
            raise PetiteError(f"{out}: the result file must end with .json")
        for path in (out, out.with_suffix(".md")):
            if path.exists() and not overwrite:
                raise PetiteError(f"{path}: already exists (use --overwrite to replace it)")
    config = {"preset": preset, "batch_size": batch_size, "crop": [64, 64, 64], "steps": steps, "warmup": warmup,
              "seed": seed, "threads": threads, "compile": compile, "checkpointing": checkpointing, "device": device,
              "data": "seeded random crops (short uniform [0, 1), long = short + 0.1 x Gaussian noise)",
              "weights": "initial values (the cost does not depend on them)",
              "optimizer": "AdamW with the method's Table-3 settings, as petite finetune"}
    result = {"command": command, "config": config, "machine": machine_description(torch_device), "backbones": {}}
    total, done = len(backbones) * len(methods), 0
    for backbone in backbones:
        entries: Dict[str, dict] = {}
        for method in methods:
            report(progress, "bench-cost", done, total, f"{backbone} {method}")
            entries[method] = _run_child(CostRun(backbone, preset, method, device, batch_size, steps, warmup,
                                                 seed, threads, compile, checkpointing))
            done += 1
        _ratios(entries)
        result["backbones"][backbone] = {"methods": entries}
    report(progress, "bench-cost", total, total, "done")
    result["machine"]["load_average_end"] = _load_average()
    if out is not None:
        write_json(out, result, overwrite=overwrite)
        atomic_write_bytes(out.with_suffix(".md"), cost_markdown(result).encode(), overwrite=overwrite)
    return result


def cost_markdown(result: dict) -> str:
    """Markdown report of a :func:`run_cost_bench` result: one table per backbone (step time,
    its phases, peak memory, activations kept for backward, trainable parameters, ratios to
    Full-FT, the spec measured) and the configuration and machine it was measured with."""
    config, machine = result["config"], result["machine"]
    lines = [f"# Fine-tuning step cost ({config['preset']} preset, batch {config['batch_size']}, "
             f"64^3, {machine['device']})", ""]
    if result.get("command"):
        lines += [f"Made by `{result['command']}`.", ""]
    for backbone, entry in result["backbones"].items():
        lines += [f"## {backbone}", "",
                  "| method | step s | forward s | backward s | optimizer s | peak MiB | activations MiB "
                  "| trainable | step / Full-FT | peak / Full-FT | spec |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for method, m in entry["methods"].items():
            lines.append(f"| {method} | {m['step_seconds']:.3f} | {m['forward_seconds']:.3f} | "
                         f"{m['backward_seconds']:.3f} | {m['optimizer_seconds']:.3f} | {m['peak_mem_mb']:.0f} | "
                         f"{m['activations_mb']:.0f} | {m['trainable']:,} | "
                         f"{m.get('step_ratio_to_full', float('nan')):.2f} | "
                         f"{m.get('mem_ratio_to_full', float('nan')):.2f} | `{m['spec']}` |")
        lines.append("")
    lines += ["Step: median wall time of {steps} steps after {warmup} warm-up steps; peak: {kind}; "
              "activations: what autograd keeps for the backward pass of one step.".format(
                  steps=config["steps"], warmup=config["warmup"],
                  kind="CUDA max_memory_allocated" if config["device"].startswith("cuda")
                  else "peak RSS above the RSS before the model"), "",
              f"Machine: {machine['processor']}, {machine['cpu_count']} CPUs, {machine['platform']}; "
              f"threads {config['threads'] or 'default'}; Python {machine['python']}, torch {machine['torch']}, "
              f"MONAI {machine['monai']}, PETITE {machine['petite']}; load average when written "
              f"{machine.get('load_average_end') or machine.get('load_average')}.", ""]
    return "\n".join(lines)


def _child_main(argv: List[str]) -> int:
    run = CostRun(**json.loads(argv[0]))
    print(RESULT_PREFIX + json.dumps(measure_step_cost(run)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
