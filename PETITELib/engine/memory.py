"""Peak-memory measurement of one training or inference phase.

CPU: the process's peak resident set size (Linux ``VmHWM``), reset at the start of the
phase through ``/proc/self/clear_refs`` so that earlier phases (data loading, a previous
run in the same process) do not count; where that reset is impossible the lifetime peak
is reported (``resource.getrusage`` on Linux and macOS, ``psutil``'s peak working set on
Windows) and ``isolated`` is False. Nothing Unix-only is imported at module level: this
module is imported by every training command, on every platform. For comparable numbers
between methods, run each phase in a fresh process (``petite bench`` does).
CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
All sizes are in MiB.

What is reported as a run's ``peak_mem_mb``: on CUDA the peak allocated memory (weights,
gradients, optimizer state, activations); on the CPU the peak RSS *above the RSS at the start
of the phase* (gradients, optimizer state, activations, temporaries), because the absolute
RSS also holds the Python interpreter, torch's libraries and the cached data set (about
0.5 GB that no training method can change). The absolute peak is kept as ``peak_rss_mb``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str):
    """A ``/proc/self/status`` field in KiB, or None where the file does not exist."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``, else ``psutil``; 0 where unknown)."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib / 1024.0
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def lifetime_peak_rss_mb() -> float:
    """Peak RSS of this process since it started, in MiB: ``getrusage`` where the ``resource``
    module exists (Linux: KiB, macOS: bytes), else (Windows) ``psutil``'s peak working set."""
    try:
        import resource
    except ImportError:  # Windows
        return _peak_working_set_mb()
    return max_rss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def max_rss_mb(max_rss: int) -> float:
    """A ``getrusage``/``wait4`` ``ru_maxrss`` in MiB (the kernel reports KiB on Linux, bytes on macOS)."""
    return max_rss / 2**20 if sys.platform == "darwin" else max_rss / 1024.0


def _peak_working_set_mb() -> float:
    """Windows' peak working set of this process in MiB (``psutil``; the current RSS elsewhere)."""
    import psutil

    info = psutil.Process().memory_info()
    return getattr(info, "peak_wset", info.rss) / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process; False where not permitted."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


@dataclass
class PeakMemory:
    """Measures the peak memory of a phase on ``device``: call :meth:`start`, then :meth:`peak_mb`.

    ``kind`` is ``"cuda_max_allocated"`` or ``"cpu_peak_rss_above_start"``; ``isolated`` says whether the
    peak covers only this phase (True) or the whole process lifetime (False).
    """

    device: torch.device
    kind: str = ""
    isolated: bool = True
    baseline_mb: float = 0.0

    def start(self) -> "PeakMemory":
        """Begin the phase: reset the peak counters and record the baseline."""
        if self.device.type == "cuda":
            self.kind = "cuda_max_allocated"
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
        else:
            self.kind = "cpu_peak_rss_above_start"
            self.isolated = _reset_peak_rss()
            self.baseline_mb = current_rss_mb()
        return self

    def peak_mb(self) -> float:
        """Peak memory in MiB since :meth:`start` (CPU: absolute RSS, CUDA: allocated bytes)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.isolated:
            kib = _status_kib("VmHWM")
            if kib is not None:
                return kib / 1024.0
        return lifetime_peak_rss_mb()

    def summary(self) -> dict:
        """Metadata: ``peak_mem_mb`` (see the module docstring), ``peak_mem_kind``,
        ``peak_mem_isolated``, ``baseline_mem_mb`` and (CPU) ``peak_rss_mb``."""
        peak = self.peak_mb()
        if self.device.type == "cuda":
            return {"peak_mem_mb": round(peak, 1), "peak_mem_kind": self.kind,
                    "peak_mem_isolated": True, "baseline_mem_mb": round(self.baseline_mb, 1)}
        return {"peak_mem_mb": round(peak - self.baseline_mb, 1), "peak_mem_kind": self.kind,
                "peak_mem_isolated": self.isolated, "baseline_mem_mb": round(self.baseline_mb, 1),
                "peak_rss_mb": round(peak, 1)}
