"""PNG figures of PET volumes: montages of central slices and short/reconstruction/long comparisons.

Volumes are (x, y, z) arrays in voxel order (nibabel convention). Slices are drawn with the
first listed axis horizontal and the second vertical, origin at the bottom left, so a
near-axial RAS volume shows anterior up (axial), superior up (coronal and sagittal).
Pixel aspect ratios come from the voxel spacing in mm.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot,
no global state, no display needed) and written atomically with deterministic bytes.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np

from .errors import PetiteError
from .extras import require
from .nifti_io import atomic_write_bytes

# (name, index of the sliced axis, horizontal axis, vertical axis) for (x, y, z) arrays.
_VIEWS = (("axial", 2, 0, 1), ("coronal", 1, 0, 2), ("sagittal", 0, 1, 2))
_INTENSITY_CMAP = "gray_r"
_ERROR_CMAP = "RdBu_r"
_DPI = 100


def central_slice(volume: np.ndarray, axis: int) -> np.ndarray:
    """The slice through the centre of an (x, y, z) ``volume`` perpendicular to ``axis``.

    Returns a 2D array whose axes are the two remaining volume axes, in order.
    """
    return np.take(volume, volume.shape[axis] // 2, axis=axis)


def _check_volume(path: Path, name: str, volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise PetiteError(f"{path}: cannot draw {name}: expected a 3D volume, got shape {volume.shape}")
    return volume


def _intensity_limits(volumes: Sequence[np.ndarray]) -> Tuple[float, float]:
    """Shared display range: from min(0, 0.1st percentile) to the 99.9th percentile of all voxels."""
    values = np.concatenate([v[np.isfinite(v)].ravel() for v in volumes])
    if values.size == 0:
        return 0.0, 1.0
    low = min(0.0, float(np.percentile(values, 0.1)))
    high = float(np.percentile(values, 99.9))
    return low, (high if high > low else low + 1.0)


def _draw_slice(axes, volume: np.ndarray, view: Tuple[str, int, int, int], spacing, **style):
    """Draw the central slice of ``volume`` for ``view`` on ``axes`` with mm-true aspect."""
    _, axis, horizontal, vertical = view
    image = central_slice(volume, axis)  # axes (horizontal, vertical), as horizontal < vertical
    axes.imshow(image.T, origin="lower", interpolation="nearest",
                aspect=float(spacing[vertical]) / float(spacing[horizontal]), **style)
    return axes.images[-1]


def _blank_grid(figure, n_rows: int, n_cols: int) -> np.ndarray:
    """An (n_rows, n_cols) array of axes without ticks (image panels need none)."""
    cells = figure.subplots(n_rows, n_cols, squeeze=False)
    for axes in cells.flat:
        axes.set_xticks([])
        axes.set_yticks([])
    return cells


def _write_png(path: Path, figure, overwrite: bool) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
    return path


def save_montage(path, rows: Sequence[Tuple[str, Sequence[Optional[np.ndarray]]]],
                 column_titles: Sequence[str], spacing=(1.0, 1.0, 1.0),
                 overwrite: bool = False) -> Path:
    """Save a PNG grid of central axial slices: one row per labelled list of volumes.

    rows: ``[(row_label, [volume, ...]), ...]``; each volume is an (x, y, z) array, or None
    for an empty cell. Every row has ``len(column_titles)`` cells and one grey-scale range
    shared by its volumes (min(0, 0.1st percentile) to the 99.9th percentile).
    spacing: voxel size in mm along x, y, z, for the pixel aspect ratio.
    Written atomically; refuses to replace ``path`` unless ``overwrite``.
    """
    path = Path(path)
    require("figures", f"{path}: the figure")
    from matplotlib.figure import Figure

    if not rows:
        raise PetiteError(f"{path}: cannot draw a montage without rows")
    n_cols = len(column_titles)
    grid = []
    for label, volumes in rows:
        if len(volumes) != n_cols:
            raise PetiteError(f"{path}: row '{label}' has {len(volumes)} volumes for {n_cols} columns")
        grid.append((label, [None if v is None else _check_volume(path, f"row '{label}'", v)
                             for v in volumes]))
    figure = Figure(figsize=(2.4 * n_cols, 2.4 * len(grid)), layout="constrained")
    cells = _blank_grid(figure, len(grid), n_cols)
    for row_index, (label, volumes) in enumerate(grid):
        present = [v for v in volumes if v is not None]
        low, high = _intensity_limits(present) if present else (0.0, 1.0)
        for col_index, volume in enumerate(volumes):
            axes = cells[row_index][col_index]
            if volume is None:
                axes.set_frame_on(False)
            else:
                _draw_slice(axes, volume, _VIEWS[0], spacing, cmap=_INTENSITY_CMAP, vmin=low, vmax=high)
            if row_index == 0:
                axes.set_title(column_titles[col_index], fontsize=9)
            if col_index == 0:
                axes.set_ylabel(label, fontsize=9)
    return _write_png(path, figure, overwrite)


def save_comparison_figure(path, short: np.ndarray, reconstruction: np.ndarray,
                           reference: np.ndarray, error: np.ndarray, spacing,
                           title: str = "", overwrite: bool = False) -> Path:
    """Save a PNG comparing short scan, reconstruction, long (reference) scan and error map.

    All four are (x, y, z) arrays of one shape in the input's units (Bq/mL, SUV...);
    ``error`` is usually ``reconstruction - reference``. Rows: axial, coronal and sagittal
    slices through the volume centre; columns: short, reconstruction, long, error.
    The first three share one grey-scale range (from the reference and the short scan);
    the error uses a diverging colour map centred on 0, symmetric at the 99.5th percentile of
    |error|, each with a colour bar. spacing: voxel size in mm (x, y, z) for the aspect.
    Written atomically; refuses to replace ``path`` unless ``overwrite``.
    """
    path = Path(path)
    require("figures", f"{path}: the figure")
    from matplotlib.figure import Figure

    named = {"short": short, "reconstruction": reconstruction, "reference": reference, "error": error}
    volumes = {name: _check_volume(path, name, v) for name, v in named.items()}
    shapes = {v.shape for v in volumes.values()}
    if len(shapes) != 1:
        raise PetiteError(f"{path}: volumes to compare differ in shape: {sorted(shapes)}")
    low, high = _intensity_limits([volumes["reference"], volumes["short"]])
    error_limit = float(np.percentile(np.abs(volumes["error"]), 99.5)) or 1.0
    columns = (("short scan", volumes["short"]), ("reconstruction", volumes["reconstruction"]),
               ("long scan (reference)", volumes["reference"]), ("error (recon - long)", volumes["error"]))

    figure = Figure(figsize=(12.0, 9.0), layout="constrained")
    cells = _blank_grid(figure, len(_VIEWS), len(columns))
    for row_index, view in enumerate(_VIEWS):
        for col_index, (column_title, volume) in enumerate(columns):
            axes = cells[row_index][col_index]
            is_error = col_index == len(columns) - 1
            style = (dict(cmap=_ERROR_CMAP, vmin=-error_limit, vmax=error_limit) if is_error
                     else dict(cmap=_INTENSITY_CMAP, vmin=low, vmax=high))
            image = _draw_slice(axes, volume, view, spacing, **style)
            if row_index == 0:
                axes.set_title(column_title, fontsize=10)
            if col_index == 0:
                axes.set_ylabel(view[0], fontsize=10)
            if col_index >= len(columns) - 2:  # colour bars for the shared grey scale and the error
                figure.colorbar(image, ax=axes, shrink=0.8)
    if title:
        figure.suptitle(title)
    return _write_png(path, figure, overwrite)
