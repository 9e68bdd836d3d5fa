"""The FLARE job of a federation: writing its folder, running it in FLARE's simulator, reading the result.

:func:`write_job` builds the job with FLARE's Job API (``FedJob``): the server app runs
:class:`~.controller.PetiteFedAvg` with :class:`~.persistor.AdapterPersistor` and an
:class:`~.wire.AdapterOnlyFilter` on incoming results; each site's app runs
:mod:`.site_script` through FLARE's Client API (``ScriptRunner``, in the site's client process)
with the same filter on outgoing results. Every app carries the plan
(``config/petite_federation.json``); the server app also the initial adapter. PETITE's own code
is not copied into the job: the server and every site install ``petite[federated]``.

The folder is what a consortium submits to its provisioned FLARE system (``nvflare job submit``,
see docs/federated.md) and what :func:`simulate` runs with ``nvflare simulator`` on one machine.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from ..progress import CancelToken, check_cancel
from . import require_flare
from .plan import INITIAL_ADAPTER_FILE, PLAN_FILE, FederationPlan, read_plan

SITE_SCRIPT = "petite_site.py"
SIMULATOR_JOB = "simulate_job"


@contextlib.contextmanager
def _working_directory(folder: Path):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def write_job(plan: FederationPlan, initial_adapter, job_root, overwrite: bool = False) -> Path:
    """Write the FLARE job folder ``job_root/<plan.name>`` for ``plan``; returns its path.

    initial_adapter: the adapter file :func:`~.plan.make_plan` wrote (the round-0 global adapter).
    """
    require_flare()
    from nvflare.job_config.api import FedJob
    from nvflare.job_config.defs import FilterType
    from nvflare.job_config.script_runner import FrameworkType, ScriptRunner

    from . import site_script
    from .controller import TRAIN_TASK, VALIDATE_TASK, PetiteFedAvg
    from .persistor import AdapterPersistor
    from .wire import AdapterOnlyFilter

    job_root = Path(job_root).resolve()
    folder = job_root / plan.name
    if folder.exists():
        if not overwrite:
            raise PetiteError(f"{folder}: already exists (use --overwrite to replace it)")
        shutil.rmtree(folder)
    tasks = [TRAIN_TASK, VALIDATE_TASK]
    job = FedJob(name=plan.name, min_clients=len(plan.sites), mandatory_clients=[s.name for s in plan.sites])
    job.set_app_packages(["PETITELib"])  # installed at every site and on the server, not shipped in the job
    job.to_server(AdapterPersistor(), id="persistor")
    job.to_server(PetiteFedAvg(num_rounds=plan.rounds, persistor_id="persistor"))
    job.to_server(AdapterOnlyFilter(), filter_type=FilterType.TASK_RESULT, tasks=tasks)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        plan.write(staging / PLAN_FILE)
        shutil.copy(initial_adapter, staging / INITIAL_ADAPTER_FILE)
        shutil.copy(site_script.__file__, staging / SITE_SCRIPT)
        job.add_file_to_server(str(staging / PLAN_FILE), app_folder_type="config")
        job.add_file_to_server(str(staging / INITIAL_ADAPTER_FILE), app_folder_type="config")
        with _working_directory(staging):  # the script is named relative to the job's custom folder
            for site in plan.sites:
                job.to(ScriptRunner(script=SITE_SCRIPT, framework=FrameworkType.NUMPY), site.name, tasks=tasks)
                job.to(AdapterOnlyFilter(), site.name, filter_type=FilterType.TASK_RESULT, tasks=tasks)
                job.add_file_to(str(staging / PLAN_FILE), site.name, app_folder_type="config")
            job.export_job(str(job_root))
    return folder


@dataclass
class SimulationResult:
    """What a simulated federation produced: the adapter file, the server's wire record and the
    simulator's wall time (seconds), workspace, the adapter's training record and the sites'
    ``OMP_NUM_THREADS``."""

    adapter: Path
    wire: List[dict]
    seconds: float
    workspace: Path
    training: dict = field(default_factory=dict)
    site_threads: str = ""

    def bytes_per_round(self) -> Dict[str, float]:
        """Mean bytes each site sent per training round (FLARE's serialised result, as the server received it)."""
        sent: Dict[str, List[int]] = {}
        for entry in self.wire:
            if entry["task"] == "train":
                sent.setdefault(entry["site"], []).append(entry["bytes"])
        return {site: sum(sizes) / len(sizes) for site, sizes in sorted(sent.items())}


def server_run_folder(workspace: Path) -> Path:
    """The server's run folder of the simulated job (holds the adapter file and the wire record)."""
    return Path(workspace) / "server" / SIMULATOR_JOB


def simulate(job_folder, workspace, threads: Optional[int] = None,
             cancel: Optional[CancelToken] = None) -> SimulationResult:
    """Run a job folder in FLARE's simulator (``nvflare simulator``), one client per plan site.

    workspace: the simulator's workspace (must not exist yet); threads: sites running at once
    (default: all). The sites running at once share this machine's cores: each gets
    ``cpu_count // threads`` (at least 1) intra-op threads (``OMP_NUM_THREADS``, unless the caller
    set it), so that they do not oversubscribe the cores. The simulator's output goes to
    ``WORKSPACE.log`` beside the workspace (the simulator lays the workspace out afresh). Returns the
    :class:`SimulationResult`; PetiteError (with the log's path) when the simulator fails or writes
    no complete adapter.
    """
    from .persistor import OUTPUT_FILE
    from .wire import RECORD_FILE

    require_flare()
    job_folder, workspace = Path(job_folder).resolve(), Path(workspace).resolve()
    plan = read_plan(next(job_folder.glob(f"app_server/config/{PLAN_FILE}"), job_folder / PLAN_FILE))
    if workspace.exists():
        raise PetiteError(f"{workspace}: the simulator's workspace already exists (choose a new folder)")
    workspace.mkdir(parents=True)
    names = [site.name for site in plan.sites]
    parallel = threads or len(names)
    command = [sys.executable, "-m", "nvflare.cli", "simulator", str(job_folder), "-w", str(workspace),
               "-c", ",".join(names), "-t", str(parallel)]
    environment = dict(os.environ)
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // parallel)))
    log_path = workspace.with_name(workspace.name + ".log")
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment,
                                   start_new_session=True)
        try:
            while process.poll() is None:
                if cancel is not None and cancel.cancelled:
                    _stop(process)
                time.sleep(0.5)
        except BaseException:
            _stop(process)
            raise
    seconds = time.perf_counter() - started
    check_cancel(cancel)
    run = server_run_folder(workspace)
    adapter = run / OUTPUT_FILE
    if process.returncode != 0 or not adapter.exists():
        raise PetiteError(f"FLARE simulator failed (exit {process.returncode}, adapter "
                          f"{'written' if adapter.exists() else 'missing'}); see {log_path} and "
                          f"{workspace}/*/{SIMULATOR_JOB}/log.txt")
    wire = [json.loads(line) for line in (run / RECORD_FILE).read_text().splitlines() if line.strip()]
    from ..peft import read_adapter

    training = read_adapter(adapter).metadata.training
    if not training.get("complete"):
        raise PetiteError(f"{adapter}: the federation stopped before its last round; see {log_path}")
    return SimulationResult(adapter, wire, seconds, workspace, training, environment["OMP_NUM_THREADS"])


def _stop(process: subprocess.Popen) -> None:
    """End the simulator and the processes it started (its own process group)."""
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (AttributeError, ProcessLookupError):  # no process groups (Windows) or already gone
        process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
