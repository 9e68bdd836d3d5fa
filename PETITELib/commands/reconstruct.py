"""``petite reconstruct``: a long-scan estimate of a short scan, optionally scored against a reference."""
from __future__ import annotations

from ..engine.inference import DEFAULT_OVERLAP
from ..engine.reconstruction import reconstruct_file
from .options import add_device, print_comparison, progress_bar


def run_reconstruct(args) -> int:
    """Reconstruct one volume; print the files written (and the metrics with --reference)."""
    progress = progress_bar(args)
    try:
        result = reconstruct_file(args.input, args.output, base=args.base, adapter=args.adapter,
                                  device=args.device, reference=args.reference, overwrite=args.overwrite,
                                  overlap=args.overlap, progress=progress)
    finally:
        progress.close()
    if result.note:
        print(result.note)
    for path in result.files:
        print(path)
    if result.metrics:
        print_comparison(result.metrics, {"input": "input", "output": "output"}, "reference")
    return 0


def register(subparsers) -> None:
    """Add the ``reconstruct`` sub-command."""
    parser = subparsers.add_parser(
        "reconstruct", help="estimate the long scan from a short scan (whole volume, native resolution)",
        description="Sliding-window inference (64^3 tiles, Gaussian blending) with a base model and an "
                    "optional scanner adapter (merged into the weights where possible). OUTPUT keeps "
                    "INPUT's affine, shape and units. With --reference: OUTPUT's metrics JSON, signed "
                    "and absolute error maps and a comparison PNG are written next to OUTPUT.")
    parser.add_argument("input", help="short-scan NIfTI volume")
    parser.add_argument("-o", "--output", required=True, help="output NIfTI volume (.nii or .nii.gz)")
    parser.add_argument("--base", help="base model file (.safetensors) or shipped name; default: the shipped "
                                       "base model (see 'petite zoo list')")
    parser.add_argument("--adapter", help="adapter for INPUT's scanner: a file (.safetensors), a shipped "
                                          "adapter's name (e.g. scanner4), 'auto' (the shipped adapter whose "
                                          "scanner matches INPUT's matrix and voxel spacing) or 'none' (default)")
    parser.add_argument("--reference", help="long-scan NIfTI of the same subject: write metrics, error maps, figure")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"tile overlap fraction (default {DEFAULT_OVERLAP})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(parser)
    parser.set_defaults(func=run_reconstruct)
