"""Summaries of per-subject metrics: mean and standard deviation, and markdown tables."""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Mapping, Sequence

import numpy as np

# (key, column title, decimals) of the columns shown in every metrics table.
METRIC_COLUMNS = (("psnr", "PSNR (dB)", 3), ("ssim", "SSIM", 4), ("nrmse", "NRMSE", 4),
                  ("psnr_whole", "PSNR whole", 3), ("ssim_whole", "SSIM whole", 4),
                  ("nrmse_whole", "NRMSE whole", 4),
                  # regional figures (PETITELib.regional.SUMMARY_KEYS), where subjects have labels
                  ("regional_abs_bias_pct", "regional bias (mean abs %)", 2),
                  ("suvr_abs_bias_pct", "SUVR bias (mean abs %)", 2),
                  ("gw_contrast_vs_long", "GM/WM contrast vs long", 4))


def mean_sd(per_subject: Mapping[str, Mapping[str, float]]) -> Dict[str, Dict[str, float]]:
    """``{"mean": {metric: value}, "sd": {metric: value}}`` over subjects (population sd, ddof 0).

    per_subject: ``{subject: {metric: value}}``; metrics missing for some subjects are
    averaged over the subjects that have them.
    """
    keys = sorted({key for metrics in per_subject.values() for key in metrics})
    mean, sd = {}, {}
    for key in keys:
        values = np.array([m[key] for m in per_subject.values() if key in m], dtype=np.float64)
        mean[key] = float(values.mean())
        sd[key] = float(values.std())
    return {"mean": mean, "sd": sd}


def _cell(mean: float, sd, decimals: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.{decimals}f}"
    return text if sd is None else f"{text} ± {sd:.{decimals}f}"


def metrics_table(rows: Sequence[tuple], extra_columns: Iterable[tuple] = ()) -> str:
    """A markdown table with one row per method.

    rows: ``(name, mean: {metric: value}, sd: {metric: value} or None, extra: {key: text})``.
    extra_columns: ``(key, title)`` pairs shown after the name from each row's ``extra``.
    Metric columns follow :data:`METRIC_COLUMNS` (only those present in some row).
    """
    extra_columns = list(extra_columns)
    present = [c for c in METRIC_COLUMNS if any(c[0] in row[1] for row in rows)]
    header = ["Method"] + [title for _, title in extra_columns] + [title for _, title, _ in present]
    lines: List[str] = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, mean, sd, extra in rows:
        cells = [name] + [str((extra or {}).get(key, "")) for key, _ in extra_columns]
        cells += [_cell(mean.get(key), (sd or {}).get(key) if sd else None, decimals)
                  for key, _, decimals in present]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
