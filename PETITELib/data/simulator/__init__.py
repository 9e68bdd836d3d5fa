"""``petite simulate``: a multi-scanner FDG brain PET simulator (full physics or fast surrogate).

Public API:
- :func:`simulate_cohort` writes a cohort (short/long/truth/labels NIfTI, scanner.json, montage);
- :func:`simulate_scan` simulates one subject on one scanner in memory (:class:`SimulatedScan`);
- :func:`simulate_subject` yields one subject's scans on several scanners (anatomy built once).

Modules: ``template`` (MNI152 head model from nilearn), ``anatomy`` (per-subject variation),
``placement`` (pose, resampling), ``projector`` (per-slice parallel-beam system matrix),
``physics`` (PSF, attenuation, efficiencies, scatter, randoms, decay, Poisson frames), ``osem``
(reconstruction, post-filter), ``surrogate`` (fast mode), ``noise`` (white-matter noise),
``scan`` (one scan), ``cohort_writer`` (files on disk).
"""
from .cohort_writer import simulate_cohort
from .scan import SimulatedScan, simulate_scan, simulate_subject

__all__ = ["simulate_cohort", "simulate_scan", "simulate_subject", "SimulatedScan"]
