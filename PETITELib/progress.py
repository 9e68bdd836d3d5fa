"""One progress/cancel mechanism shared by the CLI (tqdm), the Slicer console and the GUI panel.

A long job takes ``progress: ProgressCallback | None`` and ``cancel: CancelToken | None``.
It calls ``progress(ProgressEvent(...))`` as work advances and ``cancel.check()`` at safe
points (between epochs, batches or sliding-window tiles); ``check`` raises :class:`Cancelled`.
"""
from __future__ import annotations

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
