"""One progress/cancel mechanism shared by the CLI (tqdm), the Slicer console and the GUI panel.

A long job takes ``progress: ProgressCallback | None`` and ``cancel: CancelToken | None``.
It calls ``progress(ProgressEvent(...))`` as work advances and ``cancel.check()`` at safe
points (between epochs, batches or sliding-window tiles); ``check`` raises :class:`Cancelled`.

Two callbacks ship for the command line: :class:`TqdmProgress` (a bar per stage) and
:class:`JsonLinesProgress` (``--progress-json``: one JSON object per event and line, for a
program that runs ``petite`` as a separate process and reads its progress back with
:func:`event_from_json`, as the Slicer module does).
"""
from __future__ import annotations

import json
import math
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from .errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report.

    stage: what is running ("simulate", "pretrain", "finetune", "reconstruct", ...).
    step, total: units done and units in all (epochs, subjects, tiles); total 0 if unknown.
    message: short human-readable status.
    metrics: numbers worth showing (e.g. {"loss": 0.01, "val_psnr": 31.2}).
    """

    stage: str
    step: int
    total: int
    message: str = ""
    metrics: Dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Completed fraction in [0, 1] (0 when the total is unknown)."""
        return min(1.0, self.step / self.total) if self.total else 0.0


ProgressCallback = Callable[[ProgressEvent], None]


class CancelToken:
    """Thread-safe cancel flag: the GUI/console calls :meth:`cancel`, the job calls :meth:`check`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the running job to stop at its next safe point."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by user")


def report(progress: Optional[ProgressCallback], stage: str, step: int, total: int,
           message: str = "", **metrics: float) -> None:
    """Send a :class:`ProgressEvent` to ``progress`` if one was given."""
    if progress is not None:
        progress(ProgressEvent(stage, step, total, message, dict(metrics)))


def check_cancel(cancel: Optional[CancelToken]) -> None:
    """Raise :class:`Cancelled` if ``cancel`` was given and has been cancelled."""
    if cancel is not None:
        cancel.check()


class TqdmProgress:
    """A :data:`ProgressCallback` that draws a tqdm bar per stage on stderr (used by the CLI)."""

    def __init__(self, disable: bool = False) -> None:
        self._bar = None
        self._stage = None
        self._disable = disable

    def __call__(self, event: ProgressEvent) -> None:
        from tqdm import tqdm

        if self._bar is None or event.stage != self._stage:
            self.close()
            self._stage = event.stage
            self._bar = tqdm(total=event.total or None, desc=event.stage, disable=self._disable,
                             leave=True, dynamic_ncols=True)
        if event.total and self._bar.total != event.total:
            self._bar.total = event.total
        self._bar.n = event.step
        postfix = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in event.metrics.items()}
        if event.message:
            postfix["status"] = event.message
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """Finish the current bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonLinesProgress:
    """A :data:`ProgressCallback` that writes each event as one line of JSON to ``stream``
    (default: standard error, so that standard output keeps the command's own output) and
    flushes it at once. Used by the CLI's ``--progress-json``.

    Each line is an object ``{"stage": str, "step": int, "total": int, "fraction": float,
    "message": str, "metrics": {name: float or null}}``: ``fraction`` is
    :attr:`ProgressEvent.fraction` (0..1; 0 when the total is unknown); a metric not measured
    yet (NaN) is written as null.
    """

    def __init__(self, stream=None) -> None:
        self._stream = stream

    def __call__(self, event: ProgressEvent) -> None:
        metrics = {name: (float(value) if value is not None and math.isfinite(float(value)) else None)
                   for name, value in event.metrics.items()}
        record = {"stage": event.stage, "step": int(event.step), "total": int(event.total),
                  "fraction": round(event.fraction, 6), "message": event.message, "metrics": metrics}
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(json.dumps(record, allow_nan=False) + "\n")
        stream.flush()

    def close(self) -> None:
        """Nothing to finish (every line is complete when written)."""


def event_from_json(line: str) -> Optional[ProgressEvent]:
    """The :class:`ProgressEvent` a line written by :class:`JsonLinesProgress` describes, or None
    when the line is not such an object (other output of the process). Null metrics read as None."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
        return ProgressEvent(str(record["stage"]), int(record["step"]), int(record["total"]),
                             str(record.get("message", "")), dict(record.get("metrics") or {}))
    except (ValueError, KeyError, TypeError):
        return None
