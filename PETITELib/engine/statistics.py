"""Paired comparisons of two methods scored on the same subjects.

For per-subject metrics a (e.g. PETITE) and b (e.g. Full-FT) of the same n subjects:
the mean of the differences a - b, its 95 % confidence interval (Student t with n - 1 degrees
of freedom) and the two-sided Wilcoxon signed-rank p-value (exact for small n, as SciPy
chooses). ``significant`` is True when p < 0.05.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
from scipy import stats

ALPHA = 0.05


def paired_difference(a: Mapping[str, float], b: Mapping[str, float]) -> Optional[Dict[str, float]]:
    """Paired statistics of ``a - b`` over the subjects both hold (``{subject: value}``).

    Returns ``{"n", "mean", "ci95": [low, high], "wilcoxon_p", "significant"}``, or None with
    fewer than two shared subjects.
    """
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    differences = np.array([a[s] - b[s] for s in shared], dtype=np.float64)
    n = differences.size
    mean = float(differences.mean())
    half = float(stats.t.ppf(1 - ALPHA / 2, n - 1) * differences.std(ddof=1) / np.sqrt(n))
    p = 1.0 if np.allclose(differences, 0.0) else float(stats.wilcoxon(differences).pvalue)
    return {"n": n, "mean": mean, "ci95": [mean - half, mean + half], "wilcoxon_p": p,
            "significant": bool(p < ALPHA)}
