"""``petite reconstruct``: a long-scan estimate of a short scan, optionally scored against a reference."""
from __future__ import annotations

from ..dicom.reader import UNITS, reading
from ..engine.clinical import plan_reconstruction_extras, write_reconstruction_extras
from ..engine.inference import DEFAULT_OVERLAP
from ..engine.reconstruction import reconstruct_file
from ..regional import format_report
from .options import add_device, print_comparison, progress_bar


def run_reconstruct(args) -> int:
    """Reconstruct one volume; print the files written (and the metrics with --reference, the
    regional table with --labels)."""
    extras = plan_reconstruction_extras(args.input, args.output, reference=args.reference, labels=args.labels,
                                        ref_region=args.ref_region, dicom_out=args.dicom_out, series=args.series,
                                        units=args.units, overwrite=args.overwrite)
    progress = progress_bar(args)
    with reading(series={args.input: args.series} if args.series else None, units=args.units):
        try:
            result = reconstruct_file(args.input, args.output, base=args.base, adapter=args.adapter,
                                      device=args.device, reference=args.reference, overwrite=args.overwrite,
                                      overlap=args.overlap, progress=progress)
        finally:
            progress.close()
        write_reconstruction_extras(extras, base=result.base, adapter=result.adapter)
    if result.note:
        print(result.note)
    for path in [*result.files, *extras.files]:
        print(path)
    if result.metrics:
        print_comparison(result.metrics, {"input": "input", "output": "output"}, "reference")
    if extras.report:
        print(format_report(extras.report), end="")
    return 0


def register(subparsers) -> None:
    """Add the ``reconstruct`` sub-command."""
    parser = subparsers.add_parser(
        "reconstruct", help="estimate the long scan from a short scan (whole volume, native resolution)",
        description="Sliding-window inference (64^3 tiles, Gaussian blending) with a base model and an "
                    "optional scanner adapter (merged into the weights where possible). OUTPUT keeps "
                    "INPUT's affine, shape and units. INPUT is a NIfTI file or a folder holding a PET DICOM "
                    "series. With --reference: OUTPUT's metrics JSON, signed "
                    "and absolute error maps and a comparison PNG are written next to OUTPUT; with --labels "
                    "also a regional uptake report (OUTPUT_regions.json/.csv/.png). --dicom-out writes the "
                    "reconstruction as a derived PET series of a DICOM INPUT (docs/dicom-and-regions.md).")
    parser.add_argument("input", help="short scan: a NIfTI volume or a folder holding a PET DICOM series")
    parser.add_argument("-o", "--output", required=True, help="output NIfTI volume (.nii or .nii.gz)")
    parser.add_argument("--base", help="base model file (.safetensors) or shipped name; default: the shipped "
                                       "base model (see 'petite zoo list')")
    parser.add_argument("--adapter", help="adapter for INPUT's scanner: a file (.safetensors), a shipped "
                                          "adapter's name (e.g. scanner4), 'auto' (the shipped adapter whose "
                                          "scanner matches INPUT's matrix and voxel spacing) or 'none' (default)")
    parser.add_argument("--reference", help="long scan of the same subject (NIfTI or DICOM folder): write "
                                            "metrics, error maps, figure")
    parser.add_argument("--labels", metavar="LABELS",
                        help="region label volume (NIfTI, on the reference's grid; names from LABELS.json "
                             "beside it): write the regional uptake report (needs --reference)")
    parser.add_argument("--ref-region", metavar="REGION",
                        help="SUVR reference region: a label number or name (default: the cerebellum where the "
                             "labels name one)")
    parser.add_argument("--units", choices=UNITS, default="native",
                        help="native: the input's units (default); suv: body-weight SUV from the DICOM tags "
                             "(DICOM input only; the output and --dicom-out are then in SUV)")
    parser.add_argument("--series", metavar="UID",
                        help="Series Instance UID to read when the INPUT folder holds several series")
    parser.add_argument("--dicom-out", metavar="DIR",
                        help="also write the reconstruction as a new derived PET DICOM series in DIR "
                             "(DICOM INPUT only)")
    parser.add_argument("--overlap", type=float, default=DEFAULT_OVERLAP,
                        help=f"tile overlap fraction (default {DEFAULT_OVERLAP})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(parser)
    parser.set_defaults(func=run_reconstruct)
