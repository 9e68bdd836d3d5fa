"""The end-to-end demonstration behind the README's first command, on data it simulates itself.

Steps (all in ``out_dir``, nothing downloaded): simulate a source cohort (scanner 1) and a
target cohort (scanner 4) with the fast surrogate; pre-train a small ``cpu``-preset UNETR
base on the source; fine-tune the PETITE adapter on the target; reconstruct a held-out
target subject and score input and reconstruction against its long scan (metrics JSON,
error maps, comparison PNG). Short by design: a few minutes on 2 CPU cores, so the base is
trained far less than a shipped model would be; the printed figures say what it achieved.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import PetiteError
from ..nifti_io import save_volume
from ..progress import CancelToken, ProgressCallback


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of the demonstration: subjects per cohort and training lengths (epochs, crops, batch)."""

    source_subjects: int = 6
    target_subjects: int = 6
    pretrain_epochs: int = 6
    finetune_epochs: int = 4
    crops_per_subject: int = 8
    batch_size: int = 2
    source_scanner: int = 1
    target_scanner: int = 4


def run_demo(out_dir, *, seed: int = 0, device: str = "auto", plan: DemoPlan = DemoPlan(),
             overwrite: bool = False, progress: Optional[ProgressCallback] = None,
             cancel: Optional[CancelToken] = None):
    """Run the demonstration into ``out_dir``; return the reconstruction result (files, metrics).

    Refuses (PetiteError) an existing non-empty ``out_dir`` unless ``overwrite``.
    """
    from .. import api
    from ..data.simulator import simulate_scan
    from .reconstruction import reconstruct_file

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PetiteError(f"{out}: already exists and is not empty (use --overwrite to replace it)")
    sim = out / "cohorts"
    api.simulate(sim / "source", scanners=(plan.source_scanner,), subjects=plan.source_subjects,
                 seed=seed, mode="fast", overwrite=overwrite, progress=progress, cancel=cancel)
    api.simulate(sim / "target", scanners=(plan.target_scanner,), subjects=plan.target_subjects,
                 seed=seed + 1, mode="fast", overwrite=overwrite, progress=progress, cancel=cancel)
    training = dict(batch_size=plan.batch_size, crops_per_subject=plan.crops_per_subject, val_subjects=1)
    base = api.pretrain(sim / "source" / f"scanner{plan.source_scanner}", backbone="unetr", preset="cpu",
                        out=out / "base.safetensors", seed=seed, device=device, overwrite=overwrite,
                        epochs=plan.pretrain_epochs, val_every=max(1, plan.pretrain_epochs // 2),
                        progress=progress, cancel=cancel, **training)
    adapter = api.finetune(sim / "target" / f"scanner{plan.target_scanner}", base=base, peft="petite",
                           out=out / f"scanner{plan.target_scanner}-petite.safetensors", seed=seed,
                           device=device, overwrite=overwrite, epochs=plan.finetune_epochs,
                           val_every=max(1, plan.finetune_epochs // 2), progress=progress, cancel=cancel,
                           **training)
    # A held-out target subject: another seed, so neither training nor validation saw it.
    held_out = simulate_scan(plan.target_scanner, subject_index=0, seed=seed + 1000, mode="fast")
    test = out / "test"
    save_volume(test / "short.nii.gz", held_out.short, held_out.affine, overwrite=overwrite)
    save_volume(test / "long.nii.gz", held_out.long, held_out.affine, overwrite=overwrite)
    return reconstruct_file(test / "short.nii.gz", out / "reconstruction.nii.gz", base=base, adapter=adapter,
                            device=device, reference=test / "long.nii.gz", overwrite=overwrite,
                            progress=progress, cancel=cancel)
