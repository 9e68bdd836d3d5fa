"""``petite evaluate``: the input, the base model (No-FT) and each adapter scored on a cohort."""
from __future__ import annotations

from .. import api
from ..dicom.reader import UNITS, reading
from ..engine.clinical import check_evaluation_extras, regional_report_stem
from ..engine.inference import DEFAULT_OVERLAP
from ..engine.reports import evaluation_table
from ..regional import cohort_report, format_report, write_report
from .options import add_device, progress_bar


def run_evaluate(args) -> int:
    """Print the markdown table; with --out the JSON and the table are written first (both are
    checked, with every input, before the evaluation starts); where subjects have region labels,
    print the regional table and write RESULT_regions.json/.csv/.png."""
    check_evaluation_extras(args.cohort, out=args.out, labels=args.labels, ref_region=args.ref_region,
                            units=args.units, overwrite=args.overwrite)
    progress = progress_bar(args)
    try:
        with reading(units=args.units):
            result = api.evaluate(args.cohort, base=args.base, adapters=args.adapter or (),
                                  subjects=args.subjects, device=args.device, overlap=args.overlap,
                                  progress=progress, labels=args.labels, ref_region=args.ref_region,
                                  out=args.out, overwrite=args.overwrite)
    finally:
        progress.close()
    print(evaluation_table(result), end="")
    regions = cohort_report(result["methods"])
    if regions:
        print()
        print(format_report(regions), end="")
        if args.out:
            for path in write_report(regions, regional_report_stem(args.out), overwrite=args.overwrite):
                print(path)
    return 0


def register(subparsers) -> None:
    """Add the ``evaluate`` sub-command."""
    parser = subparsers.add_parser(
        "evaluate", help="score the input, the base model and adapters on a cohort (PSNR, SSIM, NRMSE)",
        description="Reconstruct every subject's short scan with the base model alone (No-FT) and with each "
                    "adapter, and compare with the long scan (head-masked and whole-volume PSNR, SSIM, "
                    "NRMSE; also against truth.nii.gz where present). The short scan itself is scored "
                    "as 'input'. Prints a markdown table of mean ± sd; --out also writes per-subject JSON.")
    parser.add_argument("--base", help="base model file (.safetensors) or shipped name; default: the "
                                       "shipped base model")
    parser.add_argument("--adapter", action="append",
                        help="adapter: a file, a shipped adapter's name (e.g. scanner4) or 'auto' (the shipped "
                             "adapter for the cohort's grid), as for reconstruct; repeat for several")
    parser.add_argument("--cohort", required=True, help="cohort folder of held-out subjects (NIfTI or DICOM "
                                                        "series folders short/ and long/ per subject)")
    parser.add_argument("--subjects", nargs="+", help="only these subject ids (default: all)")
    parser.add_argument("--out", help="RESULT.json to write (RESULT.md is written beside it)")
    parser.add_argument("--labels", metavar="LABELS",
                        help="one region label volume (NIfTI) on every subject's grid; default: each subject's "
                             "labels.nii.gz where present (simulated cohorts have one). Adds the regional "
                             "figures and table (RESULT_regions.json/.csv/.png with --out)")
    parser.add_argument("--ref-region", metavar="REGION",
                        help="SUVR reference region: a label number or name (default: the cerebellum where the "
                             "labels name one)")
    parser.add_argument("--units", choices=UNITS, default="native",
                        help="native (default) or suv: body-weight SUV from the DICOM tags (DICOM cohorts only)")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"tile overlap fraction (default {DEFAULT_OVERLAP})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(parser)
    parser.set_defaults(func=run_evaluate)
