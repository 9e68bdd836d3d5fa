"""The ledger of ``petite bench``: a small JSON file from which a benchmark resumes on any machine.

A full benchmark outlasts a working session, and the work folder (models, checkpoints) may be
lost with its machine. After every finished step the benchmark records in its ledger
(``RESULT.ledger.json`` beside RESULT.json, or ``--ledger``) what the result needs of it:

- ``config``: the plan (:class:`.bench.BenchPlan` without device, jobs and the base's path) and
  the base model's SHA-256; a ledger made for another plan or base is refused;
- ``targets``: per target scanner (``"4"``), the scores of ``input`` and ``no-ft`` on its
  held-out test subjects and, per fine-tuning run (method, peak learning rate), the run's
  training record (:data:`TRAINING_KEYS` of its model file's ``training`` metadata), its
  child-process record and its scores on those subjects (:data:`SCORE_KEYS` of what
  :func:`.evaluation.evaluate_models` returns);
- ``sessions``: per session that contributed, its machine, wall seconds and the runs it added.

A run in the ledger is never trained or scored again, so the ledger (JSON, no tensors) can be
committed to carry a long benchmark across machines. It is written atomically after every step.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from .reports import write_json

LEDGER_FORMAT = "petite-bench-ledger"
LEDGER_VERSION = 1
# What the ledger keeps of a run's training record: what choose_learning_rate, the result's
# method row and the validation curves read, plus the device and the settings it ran with.
TRAINING_KEYS = ("spec", "percent", "epochs", "best_epoch", "history", "val_metrics", "wall_seconds",
                 "train_seconds", "step_seconds", "cpu_seconds", "peak_mem_mb", "peak_mem_kind", "peak_mem_isolated",
                 "baseline_mem_mb", "peak_rss_mb", "device", "settings")
SCORE_KEYS = ("per_subject", "mean", "sd", "seconds")  # of one evaluate_models entry (not the regional reports)


# Plan fields a ledger may be resumed with changed: runs are kept per (scanner, method, rate), so
# a plan with a method more (or less) reuses every run it shares; the ledger takes the new lists.
METHOD_LISTS = ("methods", "secondary_methods")


def ledger_file(out) -> Path:
    """The default ledger of benchmark result ``out``: ``<OUT stem>.ledger.json`` beside it."""
    return Path(out).with_name(Path(out).stem + ".ledger.json")


def _canonical(value):
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


class BenchLedger:
    """A benchmark's ledger (see the module docstring), read with :meth:`open`, saved with :meth:`save`."""

    def __init__(self, path: Path, content: dict) -> None:
        self.path, self.content = Path(path), content
        self._session: Optional[dict] = None
        self._started = time.perf_counter()

    @classmethod
    def open(cls, path, config: dict) -> "BenchLedger":
        """The ledger at ``path`` (a new, empty one when there is none) for a benchmark of ``config``
        (the plan's, without the base's SHA-256: see :meth:`bind_base`); a one-line PetiteError
        naming ``path`` for a file that is not a ledger or was made for another plan."""
        path, config = Path(path), _canonical(config)
        if not path.exists():
            return cls(path, {"format": LEDGER_FORMAT, "version": LEDGER_VERSION, "config": config,
                              "sessions": [], "targets": {}})
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise PetiteError(f"{path}: not a readable benchmark ledger ({error})") from None
        if not isinstance(content, dict) or content.get("format") != LEDGER_FORMAT \
                or not isinstance(content.get("config"), dict):
            raise PetiteError(f"{path}: not a petite bench ledger (no format {LEDGER_FORMAT!r})")
        if content.get("version") != LEDGER_VERSION:
            raise PetiteError(f"{path}: a bench ledger of version {content.get('version')}; this petite "
                              f"reads version {LEDGER_VERSION}")
        theirs = {k: v for k, v in content["config"].items() if k != "base_sha256"}
        differs = [f"{key} {json.dumps(theirs.get(key))} here {json.dumps(config.get(key))}"
                   for key in sorted(set(theirs) | set(config))
                   if key not in METHOD_LISTS and theirs.get(key) != config.get(key)]
        if differs:
            raise PetiteError(f"{path}: the ledger was made for another benchmark plan ({'; '.join(differs)}); "
                              "give another --ledger, or delete it to start afresh")
        content["config"].update({key: config[key] for key in METHOD_LISTS if key in config})
        return cls(path, content)

    @property
    def base_sha256(self) -> Optional[str]:
        """The SHA-256 of the base model the ledger's runs were fine-tuned from (None before the first)."""
        return self.content["config"].get("base_sha256")

    def bind_base(self, sha256: str) -> None:
        """Tie the ledger to the base model with this SHA-256; a one-line PetiteError naming the
        ledger when it was made with another base (its scores are of models fine-tuned from it)."""
        config = self.content["config"]
        recorded = config.setdefault("base_sha256", sha256)
        if recorded != sha256:
            raise PetiteError(f"{self.path}: the ledger was made with another base model (SHA-256 "
                              f"{recorded[:12]}..., this base {sha256[:12]}...); give another --ledger, "
                              "or delete it to start afresh")

    def start_session(self, machine: dict) -> None:
        """Begin this session's record: its machine (:func:`.bench.machine_record`); its wall
        seconds count from now and are written with every :meth:`save`."""
        self._started = time.perf_counter()
        self._session = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "machine": machine, "wall_seconds": 0.0, "runs": 0}

    def _target(self, scanner: int) -> dict:
        return self.content["targets"].setdefault(str(scanner), {"baseline": None, "runs": []})

    def baseline(self, scanner: int) -> Optional[Dict[str, dict]]:
        """``{"input": scores, "no-ft": scores}`` on the target's test subjects, or None if not yet scored."""
        return self.content["targets"].get(str(scanner), {}).get("baseline")

    def set_baseline(self, scanner: int, scored: Dict[str, dict]) -> None:
        """Record the input's and No-FT's scores (``scored``: from evaluate_models) and save."""
        self._target(scanner)["baseline"] = {name: _scores(scored[name]) for name in ("input", "no-ft")}
        self.save()

    def run(self, scanner: int, method: str, lr: float) -> Optional[dict]:
        """The record of the run of ``method`` at peak learning rate ``lr`` on ``scanner``
        (``method``, ``lr``, ``session``, ``training``, ``process``, ``scores``), or None."""
        runs = self.content["targets"].get(str(scanner), {}).get("runs", [])
        return next((r for r in runs if (r["method"], r["lr"]) == (method, lr)), None)

    def add_run(self, scanner: int, method: str, lr: float, training: dict, process: dict, scores: dict) -> None:
        """Record a finished run: its training metadata, child-process record and test scores; save."""
        self._target(scanner)["runs"].append(
            {"method": method, "lr": lr, "session": len(self.content["sessions"]) + 1,
             "training": {key: training[key] for key in TRAINING_KEYS if key in training},
             "process": process, "scores": _scores(scores)})
        self._session["runs"] += 1
        self.save()

    def sessions(self) -> List[dict]:
        """Every session's record (started, machine, wall seconds, runs added), this one's last."""
        return self.content["sessions"] + ([self._session] if self._session else [])

    def wall_seconds(self) -> float:
        """Wall seconds of the whole benchmark: every session's, this one's up to the last save."""
        return round(sum(s["wall_seconds"] for s in self.sessions()), 1)

    def save(self) -> None:
        """Write the ledger atomically, with this session's wall seconds so far."""
        self._session["wall_seconds"] = round(time.perf_counter() - self._started, 1)
        write_json(self.path, {**self.content, "sessions": self.sessions()}, overwrite=True)


def _scores(entry: dict) -> dict:
    """What the ledger keeps of one evaluate_models entry: per-subject metrics, mean, sd, seconds."""
    return {key: entry[key] for key in SCORE_KEYS}
