"""The demonstration behind the README's first command: a shipped adapter on a new short scan.

Steps (all in ``out_dir``, nothing downloaded): simulate one subject on a target scanner
(default 4) with the full physics simulator and a seed the shipped models never saw;
reconstruct its short scan with the shipped base model alone and with the scanner's shipped
PETITE adapter; score the short scan and both reconstructions against the long scan (metrics
JSON, error maps and a comparison PNG per reconstruction). With ``train``, it also fine-tunes
a fresh PETITE adapter on a small simulated cohort of that scanner (the local adaptation a
hospital would do, shortened to a few minutes) and scores it the same way.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import PetiteError
from ..nifti_io import save_volume
from ..progress import CancelToken, ProgressCallback


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the optional fine-tuning (``train``): subjects, epochs, crops and batch."""

    train_subjects: int = 6
    finetune_epochs: int = 4
    crops_per_subject: int = 8
    batch_size: int = 2


@dataclass
class DemoResult:
    """``files`` written, ``metrics`` by label (``short scan``, ``base model``, ``base + <adapter>``
    and, with training, ``base + new adapter``; each PSNR/SSIM/NRMSE against the long scan) and
    ``note`` (which shipped adapter was used)."""

    files: List[Path] = field(default_factory=list)
    metrics: Dict[str, Dict[str, float]] = field(default_factory=dict)
    note: str = ""


def run_demo(out_dir, *, scanner: int = 4, seed: int = 0, device: str = "auto", train: bool = False,
             plan: DemoPlan = DemoPlan(), overwrite: bool = False, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None) -> DemoResult:
    """Run the demonstration into ``out_dir`` (see the module docstring) and return its result.

    Refuses (PetiteError) an existing non-empty ``out_dir`` unless ``overwrite``, and a scanner
    without a shipped adapter.
    """
    from ..extras import require

    require("sim", "petite demo")
    from .. import api
    from ..data.simulator import simulate_scan
    from ..zoo import load_manifest, verify_entry
    from .reconstruction import reconstruct_file

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PetiteError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
    manifest = load_manifest()
    adapter = manifest.entry(f"scanner{scanner}")
    if adapter is None or adapter.kind != "adapter":
        raise PetiteError(f"--scanner {scanner}: no shipped adapter for this scanner "
                          f"(shipped: {', '.join(e.name for e in manifest.adapters)})")
    verify_entry(adapter)
    # Seeds 100 and 200 made the zoo's cohorts: seed + 1000 gives a subject none of them saw.
    held_out = simulate_scan(scanner, subject_index=0, seed=seed + 1000, mode="full", cancel=cancel)
    test = out / "test"
    short = save_volume(test / "short.nii.gz", held_out.short, held_out.affine, overwrite=overwrite)
    long = save_volume(test / "long.nii.gz", held_out.long, held_out.affine, overwrite=overwrite)
    result = DemoResult(files=[short, long])
    runs = [("base model", "base_only", None), (f"base + {adapter.name}", "reconstruction", adapter.name)]
    if train:
        cohort = out / "cohort"
        api.simulate(cohort, scanners=(scanner,), subjects=plan.train_subjects, seed=seed + 2000, mode="full",
                     overwrite=overwrite, progress=progress, cancel=cancel)
        trained = api.finetune(cohort / f"scanner{scanner}", base=None, peft="petite",
                               out=out / f"scanner{scanner}-petite-new.safetensors", seed=seed, device=device,
                               overwrite=overwrite, epochs=plan.finetune_epochs, batch_size=plan.batch_size,
                               crops_per_subject=plan.crops_per_subject, val_subjects=1,
                               val_every=plan.finetune_epochs, progress=progress, cancel=cancel)
        result.files.append(Path(trained))
        runs.append(("base + new adapter", "reconstruction_new_adapter", str(trained)))
    for label, stem, chosen in runs:
        done = reconstruct_file(short, out / f"{stem}.nii.gz", base=None, adapter=chosen, device=device,
                                reference=long, overwrite=overwrite, progress=progress, cancel=cancel)
        result.files.extend(done.files)
        result.metrics.setdefault("short scan", done.metrics["input"])
        result.metrics[label] = done.metrics["output"]
    result.note = f"shipped adapter '{adapter.name}': {adapter.record.get('description', '')}"
    return result
