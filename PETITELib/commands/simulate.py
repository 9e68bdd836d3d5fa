"""``petite simulate``: write a simulated multi-scanner FDG brain PET cohort."""
from __future__ import annotations

import json
import time

from ..data.scanners import parse_scanner_list
from .options import progress_bar


def register(subparsers) -> None:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate", help="simulate short/long FDG brain scans on the paper's five scanners",
        description="Simulate a cohort: DIR/scanner<k>/sub-NNN/{short,long,truth,labels}.nii.gz, "
                    "DIR/scanner<k>/scanner.json and DIR/montage.png. Values in Bq/mL.")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--scanners", default="1,2,3,4,5", metavar="LIST",
                        help="comma-separated scanner ids from the paper's Table 4 (default: 1,2,3,4,5)")
    parser.add_argument("--subjects", type=int, default=10, metavar="N",
                        help="subjects per scanner (default: 10)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument("--mode", choices=("full", "fast"), default="full",
                        help="full: projection, Poisson counts and OSEM; fast: image-domain surrogate "
                             "for tests (default: full)")
    parser.add_argument("--jobs", type=int, default=1, metavar="J",
                        help="subjects simulated in parallel processes (default: 1)")
    parser.add_argument("--format", choices=("nifti", "dicom"), default="nifti",
                        help="nifti (default) or dicom: short and long scans as PET DICOM series folders "
                             "sub-NNN/short/ and sub-NNN/long/ (Bq/mL, with the dose, weight and times SUV "
                             "needs); truth, activity and labels stay NIfTI")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing DIR/scanner<k> folders and DIR/montage.png")
    parser.add_argument("--resume", action="store_true",
                        help="continue a run into DIR that was interrupted: with the same --seed and --mode, "
                             "the subjects it finished are kept and only the rest are simulated")
    parser.set_defaults(func=run)


def run(args) -> int:
    """Run ``petite simulate`` with parsed ``args``; prints the folders written and the noise levels."""
    from ..api import simulate  # imported here: keeps `petite --help` fast

    scanners = parse_scanner_list(args.scanners)
    progress = progress_bar(args)
    start = time.perf_counter()
    try:
        folders = simulate(args.out, scanners=scanners, subjects=args.subjects, seed=args.seed, mode=args.mode,
                           jobs=args.jobs, overwrite=args.overwrite, resume=args.resume,
                           progress=progress)
    finally:
        progress.close()
    if args.format == "dicom":
        from ..dicom.simulated import convert_simulated_cohort

        for folder in folders:
            convert_simulated_cohort(folder)
    elapsed = time.perf_counter() - start
    for folder in folders:
        record = json.loads((folder / "scanner.json").read_text())
        noise = record["white_matter_noise_mean"]
        print(f"{folder}: {args.subjects} subjects, white-matter noise short "
              f"{_percent(noise['short']['noise'])} vs long {_percent(noise['long']['noise'])}")
    print(f"montage: {folders[0].parent / 'montage.png'}")
    print(f"{len(folders) * args.subjects} scans in {elapsed:.1f} s ({args.mode} mode)")
    return 0


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
