"""``petite zoo``: list the shipped models, or rebuild them from their recorded commands."""
from __future__ import annotations

from pathlib import Path

from ..engine.zoo_rebuild import ZOO_RECIPES
from ..output_claim import claim_outputs
from ..zoo import load_manifest, verify_entry, zoo_dir
from .options import add_device, progress_bar


def _psnr(metrics: dict, key: str) -> str:
    value = (metrics.get(key) or {}).get("mean", metrics.get(key) or {}).get("psnr")
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def run_list(args) -> int:
    """Print one line per shipped model: name, kind, scanner, spec, size, held-out PSNR."""
    manifest = load_manifest(args.zoo)
    print(f"model zoo: {manifest.folder}")
    print(f"{'name':16s} {'kind':8s} {'MB':>6s}  {'short':>6s} {'base':>6s} {'adapted':>7s}  scanner / spec")
    for entry in manifest.entries:
        if args.verify:
            verify_entry(entry)
        metrics = entry.record.get("metrics", {})
        adapted = _psnr(metrics, "adapter") if entry.kind == "adapter" else "-"
        base = _psnr(metrics, "no-ft") if entry.kind == "adapter" else _psnr(metrics, "base")
        what = entry.record.get("description") or f"scanner {entry.scanner.get('id', '?')} (source)"
        if entry.kind == "base":
            what += f" [{entry.record.get('backbone', '?')}, {entry.record.get('preset', '?')} preset]"
        spec = f" [{entry.record['spec']}]" if entry.record.get("spec") else ""
        print(f"{entry.name:16s} {entry.kind:8s} {entry.size / 2 ** 20:6.1f}  {_psnr(metrics, 'input'):>6s} "
              f"{base:>6s} {adapted:>7s}  {what}{spec}")
    print("PSNR (dB, inside the head) against the long scan: short scan, base model alone, base + adapter, on "
          "held-out simulated subjects of the adapter's scanner (for the base: its validation subjects on the "
          "source scanner)." + (" SHA-256 verified." if args.verify else ""))
    return 0


def run_rebuild(args) -> int:
    """Run the zoo recipe in --work and write the models and manifest to --out."""
    from ..engine.zoo_rebuild import rebuild_zoo

    progress = progress_bar(args)
    try:
        with claim_outputs(folders={"--work": args.work, "--out": args.out or zoo_dir()}):
            document = rebuild_zoo(args.work, args.out or zoo_dir(), only=args.backbone, keep_base=args.keep_base,
                                   jobs=args.jobs,
                                   device=args.device, overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    print(f"wrote {len(document['models'])} models ({document['total_mb']} MB) and manifest.json to "
          f"{args.out or zoo_dir()}")
    for backbone in document["rebuild"]["absent"]:
        print(f"no {backbone} models: the zoo they would be kept from holds none (rebuild with --backbone {backbone})")
    return 0


def run_gap(args) -> int:
    """Measure the scanner gap (No-FT vs Full-FT per target scanner) in --work and write --out."""
    from ..engine.scanner_gap import measure_scanner_gap

    progress = progress_bar(args)
    try:
        result = measure_scanner_gap(args.work, args.out, jobs=args.jobs, device=args.device,
                                     overwrite=args.overwrite, progress=progress)
    finally:
        progress.close()
    for scanner, entry in result["targets"].items():
        print(f"scanner {scanner} ({entry['family']}): short {entry['input']['psnr']:.2f}  No-FT "
              f"{entry['no-ft']['psnr']:.2f}  Full-FT {entry['full']['psnr']:.2f}  gap {entry['gap']['mean']:+.2f} dB")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")
    return 0


def register(subparsers) -> None:
    """Add the ``zoo`` sub-command with ``list`` and ``rebuild``."""
    parser = subparsers.add_parser("zoo", help="the shipped base models and scanner adapters",
                                   description="The model zoo shipped in Resources/Models (or $PETITE_ZOO_DIR).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="show the shipped models and their held-out metrics")
    listing.add_argument("--zoo", help="zoo folder (default: the shipped one)")
    listing.add_argument("--verify", action="store_true", help="also check every file's SHA-256")
    listing.set_defaults(func=run_list)
    rebuild = actions.add_parser(
        "rebuild", help="reproduce the shipped models from their recorded commands",
        description="Simulate the cohorts, pre-train a base per backbone (UNETR, CvT-GAN), fine-tune one adapter per "
                    "scanner on each, score them on held-out subjects and write the files and manifest.json. Several "
                    "hours on 2 CPU cores; a rerun with the same --work reuses finished steps and resumes "
                    "interrupted trainings.")
    rebuild.add_argument("--work", required=True, help="work folder for cohorts, checkpoints and models")
    rebuild.add_argument("--out", help="zoo folder to write (default: the shipped one)")
    rebuild.add_argument("--jobs", type=int, default=1, help="parallel simulation processes (default 1)")
    rebuild.add_argument("--backbone", action="append", choices=[r.backbone for r in ZOO_RECIPES],
                         help="rebuild only this backbone's models (repeatable); the others are copied unchanged, "
                              "with their records, from the shipped zoo")
    rebuild.add_argument("--keep-base", action="store_true",
                         help="keep the rebuilt backbones' bases from the shipped zoo (each must have been made by "
                              "the recipe's own pre-training command) and make only their adapters")
    rebuild.add_argument("--overwrite", action="store_true", help="replace an existing zoo in --out")
    rebuild.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(rebuild)
    rebuild.set_defaults(func=run_rebuild)
    gap = actions.add_parser(
        "gap", help="measure the cross-scanner gap of the zoo's base (No-FT vs Full-FT per target scanner)",
        description="In the zoo's work folder (the same cohorts and base as 'zoo rebuild'), fully fine-tune the "
                    "base on each target scanner and score the short scan, the base alone and Full-FT on the "
                    "held-out subjects; writes OUT.json and OUT.md. A rerun reuses finished steps.")
    gap.add_argument("--work", required=True, help="work folder (shared with 'petite zoo rebuild')")
    gap.add_argument("--out", required=True, help="result file (.json; a .md is written beside it)")
    gap.add_argument("--jobs", type=int, default=1, help="parallel simulation processes (default 1)")
    gap.add_argument("--overwrite", action="store_true", help="replace an existing result")
    gap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(gap)
    gap.set_defaults(func=run_gap)
