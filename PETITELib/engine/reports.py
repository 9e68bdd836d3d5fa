"""Writing evaluation and benchmark results: JSON, markdown tables and a PSNR/memory plot."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Optional

from ..errors import PetiteError
from ..nifti_io import atomic_write_bytes
from .tables import metrics_table


def write_json(path: Path, content: dict, overwrite: bool = False) -> Path:
    """Write ``content`` as indented JSON (atomic; refuses to replace unless ``overwrite``).

    NaN and Inf are not JSON: a result holding one is refused (PetiteError naming ``path``)."""
    try:
        text = json.dumps(content, indent=1, allow_nan=False)
    except ValueError:
        raise PetiteError(f"{path}: the result holds NaN or Inf values and was not written") from None
    atomic_write_bytes(Path(path), (text + "\n").encode(), overwrite=overwrite)
    return Path(path)


def evaluation_table(result: dict) -> str:
    """Markdown table (mean ± sd) of an :func:`PETITELib.api.evaluate` result, one row per method."""
    rows = [(name, entry["mean"], entry["sd"], {"spec": entry.get("spec", ""), "n": len(entry["per_subject"])})
            for name, entry in result["methods"].items()]
    return metrics_table(rows, extra_columns=(("spec", "PEFT spec"), ("n", "subjects")))


def write_evaluation(result: dict, out: Optional[str], overwrite: bool = False) -> str:
    """Write RESULT.json and RESULT.md (when ``out`` is given); return the markdown table."""
    table = evaluation_table(result)
    if out:
        out = Path(out)
        markdown = out.with_suffix(".md")
        for path in (out, markdown):
            if path.exists() and not overwrite:
                raise PetiteError(f"{path}: already exists (use --overwrite to replace it)")
        write_json(out, result, overwrite=overwrite)
        atomic_write_bytes(markdown, table.encode(), overwrite=overwrite)
    return table


def bench_table(result: dict) -> str:
    """Markdown table of a benchmark: % parameters, metrics, fine-tuning time and peak memory."""
    rows = []
    for name, entry in result["methods"].items():
        percent = entry.get("percent")
        extra = {"percent": "-" if percent is None else f"{percent:.3g}%",
                 "seconds": "-" if entry.get("seconds") is None else f"{entry['seconds']:.0f}",
                 "mem": "-" if entry.get("peak_mem_mb") is None else f"{entry['peak_mem_mb']:.0f}",
                 "truth": "-" if entry.get("psnr_truth") is None else f"{entry['psnr_truth']:.3f}"}
        rows.append((name, entry, entry.get("sd"), extra))
    return metrics_table(rows, extra_columns=(("percent", "% params"), ("seconds", "train s"),
                                              ("mem", "peak MiB"), ("truth", "PSNR vs truth")))


def bench_plot_png(result: dict) -> bytes:
    """PNG bytes: masked PSNR per method (bars, with the input's level as a line) and
    fine-tuning peak memory vs time (scatter)."""
    from ..extras import require

    require("figures", "the benchmark plot")
    from matplotlib.figure import Figure

    methods = result["methods"]
    names = [n for n in methods if n != "input"]
    figure = Figure(figsize=(11, 4), layout="constrained")
    left, right = figure.subplots(1, 2)
    psnr = [methods[n]["psnr"] for n in names]
    left.bar(names, psnr, color=["#888888" if n in ("no-ft", "full") else "#3070b0" for n in names])
    if "input" in methods:
        left.axhline(methods["input"]["psnr"], color="#c03030", linestyle="--", label="input (short scan)")
        left.legend(loc="lower right")
    low = min(psnr + [methods.get("input", {}).get("psnr", min(psnr))])
    left.set_ylim(low - 1.0, max(psnr) + 0.5)
    left.set_ylabel("PSNR inside the head (dB)")
    left.tick_params(axis="x", rotation=45)
    trained = [n for n in names if methods[n].get("seconds") and methods[n].get("peak_mem_mb")]
    for n in trained:
        right.scatter(methods[n]["seconds"], methods[n]["peak_mem_mb"])
        right.annotate(n, (methods[n]["seconds"], methods[n]["peak_mem_mb"]), fontsize=8)
    right.set_xlabel("fine-tuning wall time (s)")
    right.set_ylabel("fine-tuning peak memory (MiB)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def bench_curves_png(result: dict) -> bytes:
    """PNG bytes: validation PSNR (dB) per epoch of every fine-tuning run of the main target, one
    panel per method, one line per learning rate of its sweep (the kept run drawn thick)."""
    from ..extras import require

    require("figures", "the benchmark's validation curves")
    from matplotlib.figure import Figure

    methods = {name: row for name, row in result["methods"].items() if row.get("curve") or row.get("sweep")}
    columns = min(3, max(1, len(methods)))
    rows = max(1, -(-len(methods) // columns))
    figure = Figure(figsize=(4 * columns, 3 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, (name, row) in zip(axes, methods.items()):
        runs = row.get("sweep") or [{"lr": row.get("lr"), "curve": row["curve"]}]
        for run in runs:
            if not run["curve"]:
                continue
            epochs, psnr = zip(*run["curve"])
            kept = run["lr"] == row.get("lr")
            axis.plot(epochs, psnr, marker="o", markersize=3, linewidth=2.2 if kept else 0.9,
                      label=f"lr {run['lr']:g}" + (" (kept)" if kept and len(runs) > 1 else ""))
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.set_ylabel("validation PSNR (dB)")
        axis.legend(fontsize=7)
    for axis in axes[len(methods):]:
        axis.set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return buffer.getvalue()
