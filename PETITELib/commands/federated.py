"""``petite federated``: fine-tune one adapter across hospitals with NVIDIA FLARE (job, simulate, bench)."""
from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import PetiteError
from .options import add_seed

SETTINGS = ("lr", "weight_decay", "batch_size", "crops_per_subject", "val_subjects", "overlap", "checkpointing")


def _settings(args) -> dict:
    return {name: getattr(args, name) for name in SETTINGS if getattr(args, name, None) is not None}


def run_job(args) -> int:
    """Write the FLARE job folder of a federation and print its path and what each round sends."""
    from ..federated import require_flare
    from ..federated.job import write_job
    from ..federated.plan import check_site_names, make_plan, parse_site

    require_flare()
    sites = dict(parse_site(text) for text in args.site)
    check_site_names([parse_site(text)[0] for text in args.site])
    with tempfile.TemporaryDirectory() as scratch:
        initial = Path(scratch) / "initial.safetensors"
        plan = make_plan(args.name, args.base, sites, peft=args.peft, rounds=args.rounds,
                         local_epochs=args.local_epochs, seed=args.seed, initial_adapter=initial, **_settings(args))
        folder = write_job(plan, initial, args.out, overwrite=args.overwrite)
    print(folder)
    print(f"{len(plan.sites)} sites, {plan.rounds} rounds of {plan.local_epochs} local epoch(s); spec {plan.spec} "
          f"({plan.parameters['percent']:.2f} % of the base's parameters: {plan.adapter_bytes / 1e6:.3f} MB of adapter "
          f"tensors per site per round); base SHA-256 {plan.base_sha256[:12]}")
    return 0


def run_simulate(args) -> int:
    """Run a job folder in FLARE's simulator, write its adapter to --out and print the rounds."""
    from ..federated.job import simulate

    out = Path(args.out)
    if not out.name.endswith(".safetensors"):
        raise PetiteError(f"{out}: output file name must end with .safetensors")
    if out.exists() and not args.overwrite:
        raise PetiteError(f"{out}: already exists (use --overwrite to replace it)")
    workspace = Path(args.workspace) if args.workspace else Path(tempfile.mkdtemp(prefix="petite-fl-")) / "workspace"
    result = simulate(args.job, workspace, threads=args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.adapter, out)
    training = result.training
    for record in training["history"]:
        print(f"global adapter after {record['round']:>2} round(s): mean validation PSNR "
              f"{record['val_metrics']['psnr']:.3f} dB over {len(record['sites'])} site(s)")
    sent = result.bytes_per_round()
    print(f"best: round {training['best_round']} -> {out}")
    print("sent per training round (FLARE message, as received): "
          + ", ".join(f"{site} {size / 1e6:.3f} MB" for site, size in sent.items()))
    print(f"simulator wall time {result.seconds:.1f} s; workspace {result.workspace}")
    return 0


def run_bench(args) -> int:
    """Measure federated vs pooled vs single-site fine-tuning and write the JSON result."""
    from ..federated.bench import BenchSetup, run_federated_bench

    setup = BenchSetup(base=args.base, scanner=args.scanner, sites=args.sites, train_subjects=args.train_subjects,
                       test_subjects=args.test_subjects, rounds=args.rounds, local_epochs=args.local_epochs,
                       mode=args.mode, seed=args.seed, peft=args.peft, device=args.device, jobs=args.jobs,
                       settings=_settings(args))
    command = "petite " + shlex.join(sys.argv[1:])
    result = run_federated_bench(setup, args.out, work=args.work, overwrite=args.overwrite, command=command)
    print(f"head PSNR on {len(result['test_subjects'])} held-out subjects: federated "
          f"{result['federated']['psnr']:.3f} dB, pooled {result['pooled']['psnr']:.3f} dB, single sites "
          + ", ".join(f"{entry['site']} {entry['psnr']:.3f}" for entry in result["local"]) + " dB")
    print(f"{result['bytes_per_round_per_site'] / 1e6:.3f} MB per site per round vs base model "
          f"{result['base_bytes'] / 1e6:.1f} MB; FLARE simulator {result['seconds']:.0f} s -> {args.out}")
    return 0


def _add_settings(parser, validation_subjects: bool = True) -> None:
    group = parser.add_argument_group("training settings (default: petite finetune's for the method)")
    group.add_argument("--lr", type=float, help="peak learning rate (AdamW, one cosine schedule over all rounds)")
    group.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    group.add_argument("--batch-size", type=int, help="crops per step at each site")
    group.add_argument("--crops-per-subject", type=int, help="random 64^3 crops per training subject per epoch")
    if validation_subjects:
        group.add_argument("--val-subjects", type=float,
                           help="validation subjects at each site: a count (>= 1) or a fraction (< 1)")
    group.add_argument("--overlap", type=float, help="sliding-window overlap for validation")
    group.add_argument("--checkpointing", action="store_true", default=None,
                       help="recompute transformer activations in the backward pass: less memory, more time")


def register(subparsers) -> None:
    """Add ``petite federated job|simulate|bench``."""
    parser = subparsers.add_parser(
        "federated", help="fine-tune one adapter across hospitals with NVIDIA FLARE (adapter tensors only)",
        description="Federated PEFT on NVIDIA FLARE: sites with the same scanner train one adapter together, "
                    "exchanging adapter tensors only (FedAvg weighted by training crops) on a base model every "
                    "site verifies by its SHA-256; the global adapter with the best mean validation PSNR over "
                    "the sites is kept and written as an ordinary adapter file. Needs: pip install "
                    "'petite[federated]'. Real deployment: docs/federated.md.")
    commands = parser.add_subparsers(dest="federated_command", metavar="SUBCOMMAND")
    commands.required = True

    job = commands.add_parser(
        "job", help="write the FLARE job folder of a federation",
        description="Write OUT/NAME: a FLARE job (server app: FedAvg controller, adapter persistor, wire "
                    "filter; one app per site running PETITE's Client API script) with the federation's plan "
                    "and initial adapter. Submit it to a provisioned FLARE system or run it with "
                    "'petite federated simulate'.")
    job.add_argument("--base", help="base model file or shipped name (default: the shipped base)")
    job.add_argument("--peft", default="petite", help="PEFT spec (default petite; see 'petite methods')")
    job.add_argument("--site", action="append", required=True, metavar="NAME=COHORT",
                     help="a site: its FLARE client name and its cohort folder on that site's machine "
                          "(repeat per site; a site may override the folder with PETITE_FL_COHORT)")
    job.add_argument("--rounds", type=int, default=12, help="federated rounds (default 12)")
    job.add_argument("--local-epochs", type=int, default=1, help="epochs each site trains per round (default 1)")
    job.add_argument("--name", default="petite-federation", help="job name (default petite-federation)")
    job.add_argument("--out", required=True, metavar="JOBS_DIR", help="folder to write the job folder into")
    job.add_argument("--overwrite", action="store_true", help="replace an existing job folder")
    add_seed(job)
    _add_settings(job)
    job.set_defaults(func=run_job)

    sim = commands.add_parser(
        "simulate", help="run a federation's job in FLARE's simulator on this machine",
        description="Run JOB (from 'petite federated job') with 'nvflare simulator', one simulated client per "
                    "site reading its cohort folder; copy the best global adapter to OUT and print each "
                    "round's mean validation PSNR and the bytes each site sent.")
    sim.add_argument("--job", required=True, help="job folder written by 'petite federated job'")
    sim.add_argument("--out", required=True, help="adapter file to write (.safetensors)")
    sim.add_argument("--workspace", help="simulator workspace, a new folder (default: a temporary folder)")
    sim.add_argument("--threads", type=int, help="sites training at once (default: all)")
    sim.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    sim.set_defaults(func=run_simulate)

    bench = commands.add_parser(
        "bench", help="federated vs pooled vs single-site fine-tuning on simulated cohorts",
        description="Simulate one target scanner's cohort, give SITES sites TRAIN subjects each (plus one "
                    "validation subject each) and hold TEST subjects out; fine-tune the adapter federated (FLARE "
                    "simulator), on the pooled subjects and at each site alone, with the same settings and "
                    "epochs; score all on the held-out subjects and write the JSON result.")
    bench.add_argument("--out", required=True, help="JSON result to write (e.g. docs/benchmarks/federated-cpu.json)")
    bench.add_argument("--work", help="work folder (default: OUT_work beside OUT); a rerun reuses its cohort")
    bench.add_argument("--base", help="base model file or shipped name (default: the shipped base)")
    bench.add_argument("--peft", default="petite", help="PEFT spec (default petite)")
    bench.add_argument("--scanner", type=int, default=4, help="target scanner of the sites (default 4)")
    bench.add_argument("--sites", type=int, default=3, help="number of sites (default 3)")
    bench.add_argument("--train-subjects", type=int, default=4, help="training subjects per site (default 4)")
    bench.add_argument("--test-subjects", type=int, default=6, help="held-out test subjects (default 6)")
    bench.add_argument("--rounds", type=int, default=12, help="federated rounds = epochs of the others (default 12)")
    bench.add_argument("--local-epochs", type=int, default=1, help="local epochs per round (default 1)")
    bench.add_argument("--mode", choices=("full", "fast"), default="full", help="simulator mode (default full)")
    bench.add_argument("--device", default="cpu", help="device of every training and of the scoring (default cpu)")
    bench.add_argument("--jobs", type=int, default=1,
                       help="trainings at once (default 1; the federation's time then includes the sharing)")
    bench.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_seed(bench)
    _add_settings(bench, validation_subjects=False)
    bench.set_defaults(func=run_bench)
