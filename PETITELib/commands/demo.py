"""``petite demo``: simulate, pre-train, fine-tune PETITE, reconstruct and score, end to end."""
from __future__ import annotations

from ..engine.demo import run_demo
from .options import add_device, add_seed, print_comparison, progress_bar


def run(args) -> int:
    """Run the demonstration; print the files written and input vs reconstruction metrics."""
    progress = progress_bar(args)
    try:
        result = run_demo(args.out, seed=args.seed, device=args.device, overwrite=args.overwrite,
                          progress=progress)
    finally:
        progress.close()
    for path in result.files:
        print(path)
    print_comparison(result.metrics, {"input": "short scan", "output": "reconstruction"}, "long scan")
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="end-to-end run on simulated data: simulate, pre-train, fine-tune PETITE, reconstruct, score",
        description="Simulates a scanner-1 source cohort and a scanner-4 target cohort (fast surrogate), "
                    "pre-trains a small cpu-preset UNETR base, fine-tunes the PETITE adapter on scanner 4, "
                    "reconstructs a held-out scanner-4 short scan and prints its metrics against the long "
                    "scan. A few minutes on 2 CPU cores; everything is written under --out.")
    parser.add_argument("--out", default="demo", help="output folder (default ./demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_seed(parser)
    add_device(parser)
    parser.set_defaults(func=run)
