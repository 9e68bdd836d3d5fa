"""One site's part of a federation, without FLARE: verify the base, validate and train the adapter.

A :class:`SiteTrainer` loads the site's copy of the base model and refuses it unless the SHA-256
of its weights is the federation's; applies the plan's PEFT spec (only those tensors learn; a
CvT-GAN discriminator stays frozen); reads the site's cohort and splits it into training and
validation subjects with the plan's seed, as ``petite finetune --seed`` does. Then, each round:

- :meth:`~SiteTrainer.set_global` copies the global adapter tensors received from the server in;
- :meth:`~SiteTrainer.validate` scores that global adapter on the site's validation subjects
  (whole volumes, head-masked PSNR/SSIM/NRMSE, as ``petite finetune`` validates);
- :meth:`~SiteTrainer.train_round` trains it for the plan's local epochs on the site's random
  64^3 crops (the same objective, optimizer and schedule as ``petite finetune``: AdamW, whose
  moments the site keeps from round to round, and one cosine learning-rate curve over all rounds);
- :meth:`~SiteTrainer.adapter_tensors` returns the adapter tensors to send back.

Nothing else leaves the site through this class: no image, crop, subject id or base weight.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import numpy as np
import torch

from ..errors import PetiteError
from ..progress import CancelToken, ProgressCallback
from .plan import FederationPlan, site_paths


class SiteTrainer:
    """The PETITE side of one federation site (see the module docstring).

    plan: the federation's plan; site: this site's name in it; cohort/base: override the plan's
    paths (default :func:`~PETITELib.federated.plan.site_paths`); device: ``auto``, ``cpu``, ``cuda``...
    Seeds the process's random generators with the plan's seed (a site runs in its own process).
    """

    def __init__(self, plan: FederationPlan, site: str, cohort=None, base=None, device: str = "auto",
                 progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None):
        from ..engine.batches import steps_per_epoch, whole_volume_validator
        from ..engine.devices import select_device
        from ..engine.jobs import build_objective, load_training_data, seed_everything
        from ..engine.models import load_base
        from ..engine.settings import TrainSettings
        from ..data.pipeline import CropDataset
        from ..peft import apply_peft, trainable_parameters

        default_cohort, default_base = site_paths(plan, site)
        cohort, base = cohort or default_cohort, base or default_base
        self.plan, self.site = plan, site
        self.device = select_device(device)
        seed_everything(plan.seed)
        loaded = load_base(base, self.device)
        if loaded.sha256 != plan.base_sha256:
            raise PetiteError(f"{base}: base weights {loaded.sha256[:12]} are not the federation's base "
                              f"({plan.base_sha256[:12]}); every site must train on the same base model")
        self.generator, self.discriminator = loaded.model, loaded.discriminator
        apply_peft(self.generator, plan.spec)
        if self.discriminator is not None:
            self.discriminator.requires_grad_(False)
        self.parameters = trainable_parameters(self.generator)
        shapes = {name: list(p.shape) for name, p in self.parameters.items()}
        if shapes != plan.adapter_tensors:
            raise PetiteError(f"{base}: spec '{plan.spec}' gives other adapter tensors here than in the "
                              "federation's plan (different PETITE versions?)")
        self.settings = TrainSettings(**plan.settings)
        self.settings.check()
        self.generator.gradient_checkpointing = self.settings.checkpointing
        self.data = load_training_data(cohort, self.settings, plan.seed, progress, cancel)
        self.dataset = CropDataset(self.data.train, samples_per_subject=self.settings.crops_per_subject,
                                   seed=plan.seed)
        self.steps_per_epoch = steps_per_epoch(self.dataset, self.settings.batch_size)
        self.objective = build_objective(self.generator, self.discriminator, False, self.settings,
                                         plan.rounds * plan.local_epochs * self.steps_per_epoch)
        self._validate = whole_volume_validator(self.generator, self.data.val, self.device, self.settings.overlap,
                                                cancel=cancel)
        self.cancel = cancel

    @property
    def crops_per_round(self) -> int:
        """Training crops one round trains on (the site's weight in the federated average)."""
        return self.plan.local_epochs * len(self.dataset)

    def scanner(self) -> dict:
        """The site's scanner description and voxel grid (as an adapter file records it)."""
        return self.data.scanner_description()

    def set_global(self, tensors: Mapping[str, np.ndarray]) -> None:
        """Copy the global adapter (name -> array of the plan's shapes) into the model."""
        if set(tensors) != set(self.parameters):
            missing = sorted(set(self.parameters) - set(tensors))[:3]
            extra = sorted(set(tensors) - set(self.parameters))[:3]
            raise PetiteError(f"site {self.site}: the global adapter's tensors differ from the plan's "
                              f"(missing {missing}, unexpected {extra})")
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                value = torch.as_tensor(np.asarray(tensors[name]), dtype=parameter.dtype)
                if tuple(value.shape) != tuple(parameter.shape):
                    raise PetiteError(f"site {self.site}: global tensor {name} has shape {tuple(value.shape)}, "
                                      f"expected {tuple(parameter.shape)}")
                parameter.copy_(value.to(parameter.device))

    def adapter_tensors(self) -> Dict[str, np.ndarray]:
        """The adapter's tensors (name -> float32 array): all that goes back to the server."""
        return {name: p.detach().to("cpu", torch.float32).numpy().copy() for name, p in self.parameters.items()}

    def validate(self) -> Dict[str, float]:
        """Mean whole-volume metrics of the current adapter on the site's validation subjects."""
        self.generator.eval()
        return self._validate()

    def train_round(self, round_index: int) -> Dict[str, float]:
        """Train the current adapter for one round (``round_index`` from 0); returns ``{"loss": mean L1}``.

        The crops of local epoch e of round r are those of epoch r x local_epochs + e + 1 of a
        ``petite finetune`` run with the plan's seed; the schedule starts at that round's step.
        """
        from ..engine.batches import epoch_batches
        from ..progress import check_cancel

        if not 0 <= round_index < self.plan.rounds:
            raise PetiteError(f"site {self.site}: round {round_index} is outside the plan's {self.plan.rounds} rounds")
        self.generator.train(True)
        first_epoch = round_index * self.plan.local_epochs
        self.objective.schedules["generator"].load_state_dict({"step": first_epoch * self.steps_per_epoch})
        losses = []
        for epoch in range(first_epoch + 1, first_epoch + self.plan.local_epochs + 1):
            for short, long in epoch_batches(self.dataset, self.settings.batch_size, self.plan.seed, epoch):
                check_cancel(self.cancel)
                losses.append(self.objective.step(short.to(self.device), long.to(self.device))["loss"])
        self.generator.eval()
        return {"loss": float(np.mean(losses))}
