"""``petite bench-cost``: the cost of one fine-tuning step per PEFT method (time, memory, parameters)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ..engine.cost import COST_METHODS, cost_markdown, run_cost_bench
from .options import add_device, add_seed, progress_bar


def run(args) -> int:
    """Measure every method and backbone, each in a fresh process, and print the markdown report."""
    command = "petite " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["bench-cost"] else ""
    progress = progress_bar(args)
    try:
        result = run_cost_bench(args.backbones, args.preset, methods=args.methods, device=args.device,
                                threads=args.threads, batch_size=args.batch_size, steps=args.steps,
                                warmup=args.warmup, seed=args.seed, compile=args.compile,
                                checkpointing=args.checkpointing, out=args.out,
                                overwrite=args.overwrite, progress=progress, command=command)
    finally:
        progress.close()
    print(cost_markdown(result), end="")
    if args.out:
        print(f"written: {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def register(subparsers) -> None:
    """Add the ``bench-cost`` sub-command."""
    parser = subparsers.add_parser(
        "bench-cost", help="measure one fine-tuning step of every PEFT method: time, peak memory, parameters",
        description="For each backbone and method, in a fresh process: the preset's model (initial weights), "
                    "prepared as 'petite finetune' prepares it, trains on seeded random 64^3 crops with the "
                    "engine's training step; WARMUP steps, then the median of STEPS timed ones (and of their "
                    "forward, backward and optimizer phases), the peak memory (CPU: peak RSS above the RSS "
                    "before the model; CUDA: max_memory_allocated), the trainable parameters, the activations "
                    "autograd keeps for the backward pass by layer type, and the ratios to Full-FT. Writes "
                    "OUT (JSON) and OUT with .md (a table), with the machine, threads and versions.")
    parser.add_argument("--backbones", nargs="+", default=["unetr", "cvtgan"], choices=("unetr", "cvtgan"),
                        help="backbones to measure (default both)")
    parser.add_argument("--preset", default="cpu", choices=("paper", "cpu"), help="model size (default cpu)")
    parser.add_argument("--methods", nargs="+", default=list(COST_METHODS), choices=COST_METHODS,
                        help="methods to measure (default all; ratios need full)")
    parser.add_argument("--threads", type=int, help="intra-op threads of each measurement (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=6, help="crops per step (default 6)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--compile", action="store_true", help="run the training forward through torch.compile")
    parser.add_argument("--checkpointing", action="store_true",
                        help="recompute the blocks' activations in the backward pass (as finetune --checkpointing)")
    parser.add_argument("--out", help="result JSON to write (the table goes beside it as .md)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_seed(parser)
    add_device(parser)
    parser.set_defaults(func=run)
