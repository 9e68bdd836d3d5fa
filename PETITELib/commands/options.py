"""Command-line options shared by the training, reconstruction, evaluation and benchmark commands."""
from __future__ import annotations

from ..engine.devices import DEVICE_CHOICES
from ..progress import JsonLinesProgress, TqdmProgress


def add_device(parser) -> None:
    """``--device auto|cpu|cuda|mps`` (default auto: CUDA, then MPS, then CPU)."""
    parser.add_argument("--device", default="auto", metavar="{" + ",".join(DEVICE_CHOICES) + "}",
                        help="where to run (default auto: CUDA if present, then Apple MPS, then CPU)")


def add_seed(parser) -> None:
    """``--seed N``: same seed, same result."""
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result; default 0)")


def add_training_overrides(parser) -> None:
    """Options that override a training run's defaults (None = the method's default)."""
    group = parser.add_argument_group("training settings (defaults depend on the backbone and method)")
    group.add_argument("--epochs", type=int, help="number of epochs")
    group.add_argument("--lr", type=float, help="peak learning rate (AdamW, cosine schedule)")
    group.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    group.add_argument("--batch-size", type=int, help="crops per step (default 6, as the paper)")
    group.add_argument("--crops-per-subject", type=int, help="random 64^3 crops per training subject per epoch")
    group.add_argument("--val-subjects", type=float,
                       help="validation subjects: a count (>= 1) or a fraction (< 1) of the cohort")
    group.add_argument("--val-every", type=int, help="validate (whole volumes) every N epochs")
    group.add_argument("--patience", type=int,
                       help="stop after N validations without a better validation PSNR (0: never; the best "
                            "epoch is kept either way)")
    group.add_argument("--overlap", type=float, help="sliding-window overlap used for validation (0..0.9, default 0.25)")
    group.add_argument("--checkpointing", action="store_true", default=None,
                       help="recompute transformer activations in the backward pass: less memory, more time")
    group.add_argument("--compile", action="store_true", default=None,
                       help="run the training forward through torch.compile (off by default: not shown "
                            "to be faster; measure with 'petite bench-cost --compile', see docs/peft-cost.md)")
    group.add_argument("--resume", action="store_true",
                       help="continue the interrupted run that writes OUT (from OUT.ckpt/)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    group.add_argument("--quiet", action="store_true", help="no progress bar")


def progress_bar(args):
    """The CLI's progress callback: one JSON object per line on stderr with ``--progress-json``
    (added to every command by :mod:`PETITELib.cli`), else a tqdm bar on stderr (silent with ``--quiet``)."""
    if getattr(args, "progress_json", False):
        return JsonLinesProgress()
    return TqdmProgress(disable=bool(getattr(args, "quiet", False)))


def print_comparison(metrics: dict, labels: dict, reference: str) -> None:
    """Print one line per scored volume (``labels``: metrics key -> label): PSNR (dB), SSIM and
    NRMSE inside the head, then whole-volume PSNR and SSIM, against ``reference``."""
    width = max(len(label) for label in labels.values())
    for key, label in labels.items():
        m = metrics[key]
        print(f"{label:{width}s} vs {reference}: PSNR {m['psnr']:.3f} dB, SSIM {m['ssim']:.4f}, "
              f"NRMSE {m['nrmse']:.4f} (inside the head); whole volume PSNR {m['psnr_whole']:.3f} dB, "
              f"SSIM {m['ssim_whole']:.4f}")
