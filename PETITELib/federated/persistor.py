"""The server's model store: the initial adapter in, the federation's result out as an adapter file.

:class:`AdapterPersistor` is a FLARE ``ModelPersistor``. It loads the initial global adapter from
the job (``config/initial_adapter.safetensors``, checked against the plan's base SHA-256 and
tensor shapes) and writes each model the controller hands it as an ordinary PETITE adapter file
(safetensors + JSON metadata: backbone, preset, the base's SHA-256, the spec, the scanner as the
sites describe it, and a training summary naming the federation's rounds, sites, the best round
and every round's validation metrics), so ``petite reconstruct --adapter`` and the Slicer panel
use it as they use any adapter. The file goes to ``output`` (relative paths: the job's run
folder on the server).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from nvflare.apis.fl_context import FLContext
from nvflare.app_common.abstract.model import ModelLearnable, ModelLearnableKey, make_model_learnable
from nvflare.app_common.abstract.model_persistor import ModelPersistor

from .controller import SUMMARY_KEY
from .plan import INITIAL_ADAPTER_FILE, PLAN_FILE, FederationPlan, read_plan

OUTPUT_FILE = "petite_federated_adapter.safetensors"


def adapter_document(plan: FederationPlan, summary: dict) -> dict:
    """The JSON metadata of the federation's adapter file (an ordinary ``petite-adapter`` document)."""
    from .. import __version__
    from ..peft import AdapterMetadata
    from ..peft.adapter_files import ADAPTER_FORMAT

    scanners = summary.get("scanners", {})
    scanner = dict(scanners[min(scanners)]) if scanners else {}
    training = {"federated": True, "framework": f"NVIDIA FLARE {_flare_version()}", "petite": __version__,
                "federation": plan.name, "aggregation": "FedAvg over adapter tensors, weighted by training crops",
                "sites": [site.name for site in plan.sites], "rounds": plan.rounds,
                "local_epochs": plan.local_epochs, "seed": plan.seed, "spec": plan.spec,
                "base_sha256": plan.base_sha256, "settings": plan.settings,
                "trainable_parameters": plan.parameters.get("trainable"),
                "total_parameters": plan.parameters.get("total"), "percent": plan.parameters.get("percent"),
                "best_round": summary["best_round"], "val_metrics": summary["val_metrics"],
                "site_scanners": scanners, "history": summary["history"], "complete": summary["complete"]}
    metadata = AdapterMetadata(plan.backbone, plan.preset, plan.base_sha256, plan.spec, scanner, training)
    return {"format": ADAPTER_FORMAT, **asdict(metadata)}


def _flare_version() -> str:
    import nvflare

    return str(nvflare.__version__)


class AdapterPersistor(ModelPersistor):
    """Initial adapter from the job, results to an adapter file (see the module docstring)."""

    def __init__(self, output: str = OUTPUT_FILE):
        super().__init__()
        self.output = output

    def _config(self, fl_ctx: FLContext) -> Path:
        return Path(fl_ctx.get_engine().get_workspace().get_app_config_dir(fl_ctx.get_job_id()))

    def output_path(self, fl_ctx: FLContext) -> Path:
        """Where the adapter file goes (``output``, relative to the job's run folder)."""
        run_dir = Path(fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id()))
        return run_dir / self.output

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        """The initial global adapter (name -> float32 array), checked against the plan."""
        from ..errors import PetiteError
        from ..peft import read_adapter

        plan = read_plan(self._config(fl_ctx) / PLAN_FILE)
        adapter = read_adapter(self._config(fl_ctx) / INITIAL_ADAPTER_FILE)
        shapes = {name: list(t.shape) for name, t in adapter.tensors.items()}
        if adapter.metadata.base_sha256 != plan.base_sha256 or shapes != plan.adapter_tensors:
            raise PetiteError(f"{adapter.path}: the initial adapter does not belong to the federation's plan")
        weights = {name: t.float().numpy() for name, t in sorted(adapter.tensors.items())}
        return make_model_learnable(weights, {})

    def save_model(self, model: ModelLearnable, fl_ctx: FLContext) -> None:
        """Write the model (global adapter + the controller's summary) as an adapter file."""
        import torch

        from ..peft.safetensors_io import write_tensors

        plan = read_plan(self._config(fl_ctx) / PLAN_FILE)
        weights = model[ModelLearnableKey.WEIGHTS]
        tensors = {name: torch.from_numpy(np.ascontiguousarray(weights[name], dtype=np.float32))
                   for name in plan.adapter_tensors}
        document = adapter_document(plan, model[ModelLearnableKey.META][SUMMARY_KEY])
        path = self.output_path(fl_ctx)
        write_tensors(path, tensors, document, overwrite=True)
        self.log_info(fl_ctx, f"PETITE adapter of round {document['training']['best_round']} written to {path}")
