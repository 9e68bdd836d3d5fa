"""``petite reconstruct`` as a library function: files in, output volume (and reference report) out.

With a reference (the long scan of the same subject) it also writes, next to OUTPUT
(``NAME.nii.gz`` gives stem ``NAME``): ``NAME_metrics.json`` (input vs reference and output vs
reference: PSNR, SSIM, NRMSE head-masked and whole-volume), ``NAME_error.nii.gz`` (output -
reference) and ``NAME_abs_error.nii.gz`` (its absolute value), both in the input's units, and
``NAME_comparison.png`` (short, reconstruction, long, error; three orthogonal slices).
Every file is checked before any work starts: none is overwritten without ``overwrite``, none may
be an input, and all are written together at the end (all of them, or none).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from ..nifti_io import load_volume, save_volume
from ..progress import CancelToken, ProgressCallback
from .inference import DEFAULT_OVERLAP


@dataclass
class ReconstructionResult:
    """Files written (output first), metrics (``{"input": {...}, "output": {...}}`` with a
    reference, else {}), the inference time in seconds, the model files used (``base``,
    ``adapter``) and ``note``, one line on how they were chosen (e.g. by ``--adapter auto``)."""

    files: List[Path]
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0
    base: Optional[Path] = None
    adapter: Optional[Path] = None
    note: str = ""


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def report_paths(output: Path) -> Dict[str, Path]:
    """The files written beside ``output`` when a reference is given (see the module docstring)."""
    stem, folder = _stem(output), output.parent
    return {"metrics": folder / f"{stem}_metrics.json", "error": folder / f"{stem}_error.nii.gz",
            "abs_error": folder / f"{stem}_abs_error.nii.gz", "figure": folder / f"{stem}_comparison.png"}


def _refuse_existing(paths: List[Path], overwrite: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not overwrite:
        raise PetiteError(f"{existing[0]}: already exists (use --overwrite to replace it)")


def reconstruct_file(input_path, output_path, *, base=None, adapter=None, device: str = "auto",
                     reference=None, overwrite: bool = False, overlap: float = DEFAULT_OVERLAP,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelToken] = None) -> ReconstructionResult:
    """Reconstruct INPUT into OUTPUT (same affine, shape, units); with ``reference`` also score it.

    base/adapter: files, shipped names or ``auto`` (see :func:`PETITELib.zoo.choose_models`).
    Raises PetiteError (one line) before any work for unreadable files, an input outside the
    accepted domain (:mod:`PETITELib.input_domain`), a reference on another voxel grid or
    without activity, an adapter made for another base, a corrupted model file, an output that
    is an input or another output, an output location that cannot be written or is in use by
    another command, or an existing output without ``overwrite``. The files are written
    together at the end: all of them, or none.
    """
    from .. import api
    from ..data.cohort import geometry_problem, volume_problems
    from ..extras import require
    from ..figures import save_comparison_figure
    from ..input_domain import check_input
    from ..metrics import compare_volumes, error_maps, metric_mask
    from ..output_claim import claim_outputs, write_all
    from ..zoo import choose_models
    from .reports import write_json

    input_path, output_path = Path(input_path), Path(output_path)
    if not output_path.name.endswith((".nii", ".nii.gz")):
        raise PetiteError(f"{output_path}: output must be a NIfTI file (.nii or .nii.gz)")
    extra = report_paths(output_path) if reference is not None else {}
    if extra:
        require("figures", f"{extra['figure']}: the comparison figure of --reference")
    short = load_volume(input_path)
    check_input(short.array, short.affine, str(input_path))
    long = None
    if reference is not None:
        long = load_volume(reference)
        problem = geometry_problem(Path(reference), long, input_path, short)
        if problem:
            raise PetiteError(problem + " (the reference must be on the input's voxel grid)")
        problems = volume_problems(Path(reference), long.array)
        if problems:
            raise PetiteError(problems[0] + " (a reference must be a long scan of the same subject)")
    choice = choose_models(base, adapter, shape=short.array.shape, spacing=short.spacing)
    files = {"-o": output_path, **{f"-o ({key} beside it)": path for key, path in extra.items()}}
    inputs = {"INPUT": input_path, "--reference": reference, "--base": choice.base, "--adapter": choice.adapter}
    with claim_outputs(files, inputs=inputs):
        _refuse_existing(list(files.values()), overwrite)
        tic = time.perf_counter()
        output = api.reconstruct(short.array, short.affine, base=choice.base, adapter=choice.adapter,
                                 device=device, overlap=overlap, progress=progress, cancel=cancel,
                                 name=str(input_path))
        seconds = time.perf_counter() - tic
        result = ReconstructionResult([output_path], seconds=seconds, base=choice.base, adapter=choice.adapter,
                                      note=choice.note)
        if long is None:
            write_all(lambda: save_volume(output_path, output, short.affine, overwrite=overwrite), [output_path])
            return result
        mask = metric_mask(long.array, short.spacing)
        result.metrics = {name: compare_volumes(volume, long.array, mask=mask, name=str(reference))
                          for name, volume in (("input", short.array), ("output", output))}
        signed, absolute = error_maps(output, long.array)
        record = {"input": str(input_path), "output": str(output_path), "reference": str(reference),
                  "base": str(choice.base), "adapter": str(choice.adapter) if choice.adapter else None,
                  "seconds": round(seconds, 3), "metrics": result.metrics,
                  "gain_psnr_db": result.metrics["output"]["psnr"] - result.metrics["input"]["psnr"]}
        title = (f"{input_path.name}: input {result.metrics['input']['psnr']:.2f} dB -> "
                 f"output {result.metrics['output']['psnr']:.2f} dB (PSNR inside the head)")

        def write() -> None:
            save_volume(output_path, output, short.affine, overwrite=overwrite)
            write_json(extra["metrics"], record, overwrite=overwrite)
            save_volume(extra["error"], signed, short.affine, overwrite=overwrite)
            save_volume(extra["abs_error"], absolute, short.affine, overwrite=overwrite)
            save_comparison_figure(extra["figure"], short.array, output, long.array, signed, short.spacing,
                                   title=title, overwrite=overwrite)

        write_all(write, list(files.values()))
        result.files = [output_path, extra["metrics"], extra["error"], extra["abs_error"], extra["figure"]]
        return result
