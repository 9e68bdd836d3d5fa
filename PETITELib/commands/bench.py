"""``petite bench``: simulate, pre-train, fine-tune every method and score them (the paper's protocol)."""
from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

from ..engine.bench import (BENCH_METHODS, SECONDARY_METHODS, SWEEP_FACTORS, curves_file, make_plan,
                            parse_lr_factors, parse_targets, run_bench)
from ..engine.bench_ledger import ledger_file
from ..output_claim import claim_outputs
from .options import add_device, add_seed, progress_bar


def run(args) -> int:
    """Run the benchmark and print its markdown report."""
    plan = make_plan(args.backbone, args.preset, quick=args.quick, seed=args.seed, device=args.device,
                     targets=parse_targets(args.targets), simulate_mode=args.simulate_mode, jobs=args.jobs,
                     methods=args.methods or BENCH_METHODS, base=args.base,
                     lr_factors=parse_lr_factors(args.lr_factors) if args.lr_factors else None,
                     secondary_methods=args.other_targets_methods)
    if args.pretrain_epochs:
        plan = replace(plan, pretrain={**plan.pretrain, "epochs": args.pretrain_epochs})
    if args.finetune_epochs:
        plan = replace(plan, finetune={**plan.finetune, "epochs": args.finetune_epochs})
    out = Path(args.out)
    files = {"--out": out, "--out (markdown)": out.with_suffix(".md"), "--out (figure)": out.with_suffix(".png"),
             "--out (curves)": curves_file(out)}
    files["--ledger"] = Path(args.ledger) if args.ledger else ledger_file(out)
    work = Path(args.work) if args.work else out.with_name(out.stem + "_work")
    progress = progress_bar(args)
    try:
        with claim_outputs(files, folders={"--work": work}, inputs={"--base": args.base}):
            run_bench(plan, args.out, work=work, overwrite=args.overwrite, progress=progress,
                      command="petite " + shlex.join(sys.argv[1:]), ledger=files["--ledger"])
    finally:
        progress.close()
    print(Path(args.out).with_suffix(".md").read_text(encoding="utf-8"), end="")
    return 0


FACTORS = ",".join(f"{factor:g}" for factor in SWEEP_FACTORS)


def register(subparsers) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench", help="run the paper's protocol end to end on simulated data and report every method",
        description="Simulate a source (scanner 1) and target cohorts, pre-train a base model, fine-tune "
                    "Full-FT, LayerNorm, BitFit, LoRA, Adapters, SSF, VPT, gated VPT and PETITE on 10 subjects of each target "
                    "scanner (each in a fresh process: wall time and peak memory measured in isolation), and "
                    "score the input, No-FT and every method on held-out subjects with paired statistics. Writes "
                    "RESULT.json, RESULT.md, RESULT.png and RESULT-curves.png; models and data stay in a work folder "
                    "that a rerun reuses, and a ledger (RESULT.ledger.json) records every finished run and its "
                    "scores, so a rerun resumes from it even without the work folder. Without --quick each method is "
                    f"fine-tuned at {FACTORS} times its Table-3 learning rate with early stopping on the main target, "
                    "and the run with the best validation PSNR is kept (the test subjects play no part in the choice); "
                    f"the other targets fine-tune {' and '.join(SECONDARY_METHODS)} at the chosen rates.")
    parser.add_argument("--backbone", required=True, choices=("unetr", "cvtgan"))
    parser.add_argument("--preset", default="cpu", choices=("paper", "cpu"), help="model size (default cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="small, fast run (fast simulation, short trainings): under 20 min on 2 CPU cores")
    parser.add_argument("--out", required=True, help="RESULT.json to write")
    parser.add_argument("--work", help="work folder (default: RESULT_work beside RESULT.json)")
    parser.add_argument("--ledger",
                        help="the benchmark's ledger, read to resume and written after every step (default: "
                             "RESULT.ledger.json beside RESULT.json); commit it to carry a long run across machines")
    parser.add_argument("--targets", default="4",
                        help="target scanners to fine-tune for, comma-separated, e.g. 2,3,4,5 (default 4; the "
                             "first is the main target of the report)")
    parser.add_argument("--simulate-mode", choices=("full", "fast"),
                        help="simulator mode (default: fast with --quick, full otherwise)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel simulation processes (default 1)")
    parser.add_argument("--methods", nargs="+", choices=BENCH_METHODS, help="only these methods")
    parser.add_argument("--other-targets-methods", nargs="+", choices=BENCH_METHODS, metavar="METHOD",
                        help=f"the methods fine-tuned on the targets after the first (default: {' '.join(SECONDARY_METHODS)}; "
                             "with --quick: every method)")
    parser.add_argument("--lr-factors",
                        help=f"learning-rate sweep as factors of each method's Table-3 rate (default: {FACTORS}; "
                             "with --quick: 1)")
    parser.add_argument("--base", help="fine-tune this base model (e.g. the shipped one) instead of "
                                       "simulating a source cohort and pre-training one")
    parser.add_argument("--pretrain-epochs", type=int, help="override the pre-training epochs")
    parser.add_argument("--finetune-epochs", type=int, help="override the fine-tuning epochs")
    parser.add_argument("--overwrite", action="store_true", help="replace existing RESULT files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_seed(parser)
    add_device(parser)
    parser.set_defaults(func=run)
