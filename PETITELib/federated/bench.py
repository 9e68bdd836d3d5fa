"""``petite federated bench``: a federated adapter vs one trained on the pooled data vs each site alone.

1. Simulate ``sites x (train_subjects + 1) + test_subjects`` subjects of one target scanner.
2. Share them out: the pooled cohort's seeded split (``petite finetune --val-subjects SITES``)
   picks the validation subjects; each site gets one of them and ``train_subjects`` of the others,
   so each site's own split (``--val-subjects 1``, same seed) picks that same subject. The rest
   are the held-out test subjects. Nothing is shared between sites; the pooled run sees the union.
3. Fine-tune the same spec with the same settings and seed, validating every epoch:
   federated (``rounds`` rounds of ``local_epochs`` epochs, FLARE's simulator, the sites in
   parallel), pooled (``rounds x local_epochs`` epochs on all training subjects) and each site
   alone (as many epochs on its own subjects); each non-federated run in a fresh process.
4. Score input, No-FT and every adapter on the test subjects (head-masked PSNR etc.), measure
   the bytes each site sent per round (FLARE messages as the server received them) against the
   size of the base model, and write the JSON result with the machine and its load average.

Every step leaves its files in a work folder; a rerun with the same settings reuses the cohort and
finished trainings (another setup needs another work folder).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError


@dataclass(frozen=True)
class BenchSetup:
    """What the benchmark runs (see the module docstring); settings: TrainSettings overrides
    (all but epochs and validation subjects, which the benchmark sets); jobs: trainings run at
    once (1: one after the other; more: the pooled, single-site and federated trainings share
    the machine, and the federation's wall time includes that sharing)."""

    base: Optional[str] = None
    scanner: int = 4
    sites: int = 3
    train_subjects: int = 4
    test_subjects: int = 6
    rounds: int = 12
    local_epochs: int = 1
    mode: str = "full"
    seed: int = 0
    peft: str = "petite"
    device: str = "cpu"
    jobs: int = 1
    settings: Dict[str, object] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        """Epochs of the pooled and single-site runs (= the federation's rounds x local epochs)."""
        return self.rounds * self.local_epochs


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # not available on Windows
        return None


def link_cohort(source: Path, subject_ids: List[str], folder: Path) -> Path:
    """A cohort ``folder`` of the chosen subjects of cohort ``source`` (relative symlinks + scanner.json)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(source / "scanner.json", folder / "scanner.json")
    for subject in subject_ids:
        (folder / subject).symlink_to(os.path.relpath(source / subject, folder))
    return folder


def share_out(subject_ids: List[str], setup: BenchSetup) -> dict:
    """``{"sites": {name: [ids]}, "pooled": [ids], "test": [ids], "validation": [ids]}`` (see the module docstring)."""
    from ..data.cohort import Subject
    from ..data.pipeline import split_subjects

    per_site = setup.train_subjects + 1
    needed = setup.sites * per_site + setup.test_subjects
    if len(subject_ids) < needed:
        raise PetiteError(f"federated bench: {len(subject_ids)} subjects, {needed} needed")
    pooled = subject_ids[:setup.sites * per_site]
    stand_ins = [Subject(s, Path(s), Path(s)) for s in pooled]
    train, validation = split_subjects(stand_ins, setup.sites, setup.seed)
    train_ids, val_ids = [s.subject_id for s in train], [s.subject_id for s in validation]
    sites = {f"site-{i + 1}": [val_ids[i]] + train_ids[i * setup.train_subjects:(i + 1) * setup.train_subjects]
             for i in range(setup.sites)}
    return {"sites": sites, "pooled": pooled, "validation": val_ids,
            "test": subject_ids[len(pooled):len(pooled) + setup.test_subjects]}


def _finetune_arguments(setup: BenchSetup, base: Path, cohort: Path, val_subjects: int) -> List[str]:
    arguments = ["--base", str(base), "--cohort", str(cohort), "--peft", setup.peft,
                 "--epochs", str(setup.epochs), "--val-subjects", str(val_subjects), "--val-every", "1",
                 "--seed", str(setup.seed), "--device", setup.device, "--quiet"]
    for name, value in setup.settings.items():
        option = "--" + name.replace("_", "-")
        arguments += [option] if value is True else [option, str(value)]
    return arguments


def _federate(setup: BenchSetup, base: Path, cohorts: Dict[str, Path], work: Path) -> dict:
    """Run (or reuse) the federation in FLARE's simulator; returns its record."""
    from .job import simulate, write_job
    from .plan import make_plan

    record_path = work / "federated.json"
    adapter = work / "models" / "federated.safetensors"
    if record_path.exists() and adapter.exists():
        return json.loads(record_path.read_text())
    initial = work / "models" / "federated-initial.safetensors"
    initial.parent.mkdir(parents=True, exist_ok=True)
    plan = make_plan("petite-bench", base, {name: str(folder) for name, folder in cohorts.items()}, peft=setup.peft,
                     rounds=setup.rounds, local_epochs=setup.local_epochs, seed=setup.seed, initial_adapter=initial,
                     val_subjects=1, **setup.settings)
    job = write_job(plan, initial, work / "jobs", overwrite=True)
    workspace = work / f"simulation-{time.strftime('%Y%m%d-%H%M%S')}"
    os.environ["PETITE_FL_DEVICE"] = setup.device  # read by the sites' processes the simulator starts
    load_before = _load_average()
    result = simulate(job, workspace)
    shutil.copyfile(result.adapter, adapter)
    sent = result.bytes_per_round()
    record = {"seconds": round(result.seconds, 1), "load_average_before": load_before,
              "load_average_after": _load_average(), "bytes_per_round_by_site": sent,
              "bytes_per_round_per_site": sum(sent.values()) / len(sent),
              "adapter_tensor_bytes": plan.adapter_bytes, "site_omp_num_threads": result.site_threads,
              "best_round": result.training["best_round"], "rounds": plan.rounds,
              "val_psnr_by_round": [r["val_metrics"]["psnr"] for r in result.training["history"]],
              "workspace": str(workspace), "job": str(job)}
    record_path.write_text(json.dumps(record, indent=1))
    return record


def score_models(cohort: Path, base: Path, adapters: Dict[str, Path], setup: BenchSetup) -> Dict[str, dict]:
    """Metrics of the input, No-FT and each adapter (``{name: file}``) on every subject of ``cohort``
    (:func:`~PETITELib.engine.evaluation.evaluate_models`), ``setup.jobs`` models at once (threads)."""
    from ..data.cohort import load_cohort
    from ..engine.devices import select_device
    from ..engine.evaluation import evaluate_models
    from ..engine.models import check_compatible, load_for_inference

    device = select_device(setup.device)
    subjects = list(load_cohort(cohort).subjects)
    for path in adapters.values():
        check_compatible(base, path)
    loaders = {"no-ft": lambda: load_for_inference(base, None, device)}
    loaders.update({name: (lambda p=path: load_for_inference(base, p, device)) for name, path in adapters.items()})
    with ThreadPoolExecutor(max_workers=setup.jobs) as pool:  # torch releases the GIL while it computes
        futures = {name: pool.submit(evaluate_models, subjects, {name: load}, device=device)
                   for name, load in loaders.items()}
        scored = {name: future.result() for name, future in futures.items()}
    return {"input": scored["no-ft"]["input"], **{name: result[name] for name, result in scored.items()}}


def run_federated_bench(setup: BenchSetup, out, work=None, overwrite: bool = False, command: str = "") -> dict:
    """Run the benchmark (see the module docstring); write ``out`` (JSON) and return the result."""
    from ..extras import require

    require("sim", "petite federated bench")
    from ..data.cohort import load_cohort
    from ..data.simulator import simulate_cohort
    from ..engine.bench import machine_record, simulated_cohort_ready, train_in_child
    from ..engine.devices import select_device
    from ..engine.models import resolve_base
    from ..engine.reports import write_json
    from ..engine.statistics import paired_difference
    from ..peft import base_model_sha256, read_adapter
    from . import require_flare

    require_flare()
    out = Path(out)
    if not out.name.endswith(".json"):
        raise PetiteError(f"{out}: the benchmark result must be a .json file")
    if out.exists() and not overwrite:
        raise PetiteError(f"{out}: already exists (use --overwrite)")
    for name in ("epochs", "val_subjects", "val_every"):
        if name in setup.settings:
            raise PetiteError(f"federated bench: {name} is set by the benchmark")
    base = resolve_base(setup.base)
    work = Path(work) if work else out.with_name(out.stem + "_work")
    recorded = {**{k: v for k, v in asdict(setup).items() if k != "jobs"}, "base": str(base)}  # jobs: same results
    if (work / "setup.json").exists() and json.loads((work / "setup.json").read_text()) != recorded:
        raise PetiteError(f"{work}: this work folder holds a benchmark with other settings; choose another --work")
    work.mkdir(parents=True, exist_ok=True)
    (work / "setup.json").write_text(json.dumps(recorded, indent=1, sort_keys=True))
    started, load_start = time.perf_counter(), _load_average()

    total = setup.sites * (setup.train_subjects + 1) + setup.test_subjects
    data_root = work / "data"
    cohort = data_root / f"scanner{setup.scanner}"
    if not simulated_cohort_ready(cohort, setup.mode, setup.seed, total):
        simulate_cohort(data_root, scanners=[setup.scanner], subjects=total, seed=setup.seed, mode=setup.mode,
                        overwrite=True, resume=True)
    shares = share_out([s.subject_id for s in load_cohort(cohort).subjects], setup)
    cohorts = work / "cohorts"
    sites = {name: link_cohort(cohort, ids, cohorts / name) for name, ids in shares["sites"].items()}
    pooled = link_cohort(cohort, shares["pooled"], cohorts / "pooled")
    test = link_cohort(cohort, shares["test"], cohorts / "test")

    models = work / "models"
    models.mkdir(parents=True, exist_ok=True)
    trainings = [(train_in_child, "finetune", models / "pooled.safetensors",
                  _finetune_arguments(setup, base, pooled, setup.sites))]
    trainings += [(train_in_child, "finetune", models / f"{name}.safetensors",
                   _finetune_arguments(setup, base, folder, 1)) for name, folder in sites.items()]
    trainings.append((_federate, setup, base, sites, work))
    with ThreadPoolExecutor(max_workers=setup.jobs) as pool:  # each thread waits for its own process(es)
        done = [pool.submit(*training) for training in trainings]
        federated = [future.result() for future in done][-1]

    scores = score_models(test, base, {name: models / f"{name}.safetensors"
                                       for name in ("federated", "pooled", *sites)}, setup)

    def row(name: str) -> dict:
        entry = scores[name]
        return {"psnr": entry["mean"]["psnr"], "ssim": entry["mean"]["ssim"], "nrmse": entry["mean"]["nrmse"],
                "psnr_sd": entry["sd"]["psnr"],
                "per_subject_psnr": {s: m["psnr"] for s, m in entry["per_subject"].items()}}

    def trained(name: str) -> dict:
        training = read_adapter(models / f"{name}.safetensors").metadata.training
        return {"best_epoch": training.get("best_epoch"), "wall_seconds": training.get("wall_seconds"),
                "val_psnr": training.get("val_metrics", {}).get("psnr")}

    local = [{"site": name, **row(name), **trained(name), "subjects": shares["sites"][name]} for name in sites]
    result = {
        "command": command,
        "pooled": {**row("pooled"), **trained("pooled")},
        "federated": {**row("federated"), "best_round": federated["best_round"], "rounds": federated["rounds"],
                      "val_psnr_by_round": federated["val_psnr_by_round"]},
        "local": local,
        "input": row("input"), "no_ft": row("no-ft"),
        "federated_vs_pooled_psnr": paired_difference(row("federated")["per_subject_psnr"],
                                                      row("pooled")["per_subject_psnr"]),
        "bytes_per_round_per_site": federated["bytes_per_round_per_site"],
        "bytes_per_round_by_site": federated["bytes_per_round_by_site"],
        "adapter_tensor_bytes": federated["adapter_tensor_bytes"],
        "base_bytes": base.stat().st_size, "base_file": str(base), "base_sha256": base_model_sha256(base),
        "seconds": federated["seconds"], "site_omp_num_threads": federated.get("site_omp_num_threads"),
        "targets": {
            "federated_within_0.1_dB_of_pooled": abs(row("federated")["psnr"] - row("pooled")["psnr"]) <= 0.1,
            "federated_better_than_every_site_alone": all(row("federated")["psnr"] > e["psnr"] for e in local),
            "simulator_under_20_min": federated["seconds"] < 20 * 60},
        "test_subjects": shares["test"], "validation_subjects": shares["validation"],
        "setup": {**asdict(setup), "epochs": setup.epochs, "cohort": str(cohort)},
        "load_average": {"start": load_start, "simulator_start": federated["load_average_before"],
                         "simulator_end": federated["load_average_after"], "end": _load_average()},
        "machine": machine_record(select_device(setup.device)),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "notes": ("seconds: wall time of the FLARE simulator run (all sites in parallel processes on this machine, "
                  "beside the other trainings when setup.jobs > 1; each site with site_omp_num_threads "
                  "intra-op threads); "
                  "bytes: FLARE's serialised task result (FOBS) of each site per training round, as the server "
                  "received it; base_bytes: the base model file."),
    }
    write_json(out, result, overwrite=True)
    return result
