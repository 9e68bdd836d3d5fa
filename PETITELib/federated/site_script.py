"""The training script NVIDIA FLARE runs at each site of a PETITE federation (FLARE Client API).

The job carries this file in every client app (``custom/``) and the plan in the app's
``config/`` folder. For each task from the server it receives the global adapter, scores it on
the site's validation subjects, and for a ``train`` task trains it for one round; it sends back
the validation metrics and, after training, the adapter tensors with the number of training
crops (FLARE's ``NUM_STEPS_CURRENT_ROUND``: the site's weight in the average). With the first
task it also sends the site's scanner description (scanner.json and voxel grid). Nothing else.

Environment of the site's process: ``PETITE_FL_COHORT`` / ``PETITE_FL_BASE`` override the
plan's paths for this site; ``PETITE_FL_DEVICE`` picks the device (default ``auto``).
"""
import os
import sys
from pathlib import Path


def plan_path() -> Path:
    """The plan file of this app: ``<app>/config/petite_federation.json`` beside ``<app>/custom/``."""
    from PETITELib.federated.plan import PLAN_FILE

    return Path(__file__).resolve().parent.parent / "config" / PLAN_FILE


def main() -> None:
    """Run the site's side of the federation until the server ends the job."""
    import nvflare.client as flare
    from nvflare.apis.fl_constant import FLMetaKey
    from nvflare.app_common.abstract.fl_model import FLModel

    from PETITELib.errors import PetiteError
    from PETITELib.federated.plan import read_plan
    from PETITELib.federated.site import SiteTrainer

    flare.init()
    site = flare.get_site_name()
    try:
        trainer = SiteTrainer(read_plan(plan_path()), site, device=os.environ.get("PETITE_FL_DEVICE", "auto"))
    except PetiteError as error:
        sys.stderr.write(f"petite federated site {site}: error: {error}\n")
        raise
    first = True
    while flare.is_running():
        task = flare.receive()
        if task is None:
            break
        trainer.set_global(task.params)
        metrics = {f"val_{key}": value for key, value in trainer.validate().items()}
        meta = {"petite_scanner": trainer.scanner()} if first else {}
        first = False
        if flare.is_train():
            metrics["train_loss"] = trainer.train_round(task.current_round)["loss"]
            flare.send(FLModel(params=trainer.adapter_tensors(), metrics=metrics,
                               meta={FLMetaKey.NUM_STEPS_CURRENT_ROUND: trainer.crops_per_round, **meta}))
        else:
            flare.send(FLModel(metrics=metrics, meta=meta))


if __name__ == "__main__":
    main()
