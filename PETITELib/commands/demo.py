"""``petite demo``: a new scanner-4 short scan reconstructed with the shipped adapter, scored."""
from __future__ import annotations

from ..engine.demo import run_demo
from ..output_claim import claim_outputs
from .options import add_device, add_seed, print_comparison, progress_bar


def run(args) -> int:
    """Run the demonstration; print the files written and the metrics against the long scan."""
    progress = progress_bar(args)
    try:
        with claim_outputs(folders={"--out": args.out}):
            result = run_demo(args.out, scanner=args.scanner, seed=args.seed, device=args.device, train=args.train,
                              overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    for path in result.files:
        print(path)
    print(result.note)
    print_comparison(result.metrics, {label: label for label in result.metrics}, "long scan")
    return 0


def register(subparsers) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo", help="reconstruct a simulated short scan with the shipped models and score it (offline)",
        description="Simulates one new subject on a target scanner (default 4, full physics), reconstructs its "
                    "short scan with the shipped base model alone and with the scanner's shipped PETITE adapter, "
                    "and prints PSNR/SSIM/NRMSE of the short scan and both reconstructions against the long scan; "
                    "writes volumes, error maps, metrics JSON and comparison figures under --out. With --train it "
                    "also fine-tunes a fresh adapter on 6 simulated subjects of that scanner (a few more minutes).")
    parser.add_argument("--out", default="demo", help="output folder (default ./demo)")
    parser.add_argument("--scanner", type=int, default=4, choices=(2, 3, 4, 5),
                        help="target scanner of the paper's Table 4 (default 4)")
    parser.add_argument("--train", action="store_true", help="also fine-tune and score a new PETITE adapter")
    parser.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_seed(parser)
    add_device(parser)
    parser.set_defaults(func=run)
