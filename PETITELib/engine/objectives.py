"""Training objectives: one optimisation step of the generator (and of the discriminator).

``L1Objective`` (UNETR): mean absolute error between the network output and the long scan.
``AdversarialObjective`` (CvT-GAN): ``l1_weight`` x L1 + a patch-GAN loss from a
discriminator that sees the pair [short, candidate] as two channels. During pre-training
the discriminator learns too; during fine-tuning it stays frozen and only passes gradients.
Tensors are (B, 1, 64, 64, 64) float32 in normalised units.

On CUDA the forward passes and losses run under bfloat16 autocast (weights, gradients and
optimizer state stay float32; see :func:`~PETITELib.engine.devices.training_autocast`).
``forward``: what computes the generator's output (default the generator itself; a
``torch.compile``-d generator when the run asks for it). ``step(..., timer=None)``: a timer, if
given, is called as ``timer("forward")``, ``timer("backward")`` and ``timer("optimizer")`` when
each phase of the generator's update ends (``petite bench-cost`` measures them).
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .devices import training_autocast
from .schedule import CosineSchedule
from ..peft import trainable_parameters

PhaseTimer = Callable[[str], None]


def _mark(timer: Optional[PhaseTimer], phase: str) -> None:
    if timer is not None:
        timer(phase)


def adamw(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` only (frozen ones get no optimizer state)."""
    params = list(trainable_parameters(model).values())
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


class L1Objective:
    """Generator-only training with an L1 loss; ``optimizers`` names each optimizer for checkpoints."""

    def __init__(self, generator: nn.Module, optimizer: torch.optim.Optimizer, schedule: CosineSchedule,
                 forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.generator = generator
        self.forward = generator if forward is None else forward
        self.optimizers = {"generator": optimizer}
        self.schedules = {"generator": schedule}
        self.models = {"generator": generator}

    def step(self, short: torch.Tensor, long: torch.Tensor, timer: Optional[PhaseTimer] = None) -> Dict[str, float]:
        """One optimisation step on a batch; returns ``{"loss": L1}``."""
        optimizer = self.optimizers["generator"]
        self.schedules["generator"].apply(optimizer)
        optimizer.zero_grad(set_to_none=True)
        with training_autocast(short.device):
            loss = F.l1_loss(self.forward(short).float(), long)
        _mark(timer, "forward")
        loss.backward()
        _mark(timer, "backward")
        optimizer.step()
        self.schedules["generator"].advance()
        _mark(timer, "optimizer")
        return {"loss": float(loss.detach())}


class AdversarialObjective:
    """Pix2pix-style objective: L1 (weight ``l1_weight``) + non-saturating GAN loss on logits.

    ``discriminator(short, candidate)`` returns patch logits (no sigmoid inside).

    With ``discriminator_optimizer`` None the discriminator is frozen (fine-tuning): it must
    have ``requires_grad`` False on all parameters and stays in eval mode.
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module,
                 generator_optimizer: torch.optim.Optimizer, generator_schedule: CosineSchedule,
                 discriminator_optimizer: Optional[torch.optim.Optimizer] = None,
                 discriminator_schedule: Optional[CosineSchedule] = None, l1_weight: float = 100.0,
                 forward: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        self.generator = generator
        self.forward = generator if forward is None else forward
        self.discriminator = discriminator
        self.l1_weight = l1_weight
        self.optimizers = {"generator": generator_optimizer}
        self.schedules = {"generator": generator_schedule}
        self.models = {"generator": generator, "discriminator": discriminator}
        if discriminator_optimizer is not None:
            self.optimizers["discriminator"] = discriminator_optimizer
            self.schedules["discriminator"] = discriminator_schedule

    @property
    def trains_discriminator(self) -> bool:
        """True during pre-training (the discriminator has an optimizer)."""
        return "discriminator" in self.optimizers

    def _logits(self, short: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        return self.discriminator(short, candidate)

    def step(self, short: torch.Tensor, long: torch.Tensor, timer: Optional[PhaseTimer] = None) -> Dict[str, float]:
        """Discriminator step (pre-training only), then generator step; returns the losses."""
        with training_autocast(short.device):
            fake = self.forward(short).float()
        metrics = {}
        if self.trains_discriminator:
            opt_d = self.optimizers["discriminator"]
            self.schedules["discriminator"].apply(opt_d)
            opt_d.zero_grad(set_to_none=True)
            with training_autocast(short.device):
                real_logits = self._logits(short, long).float()
                fake_logits = self._logits(short, fake.detach()).float()
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            loss_d.backward()
            opt_d.step()
            self.schedules["discriminator"].advance()
            metrics["loss_d"] = float(loss_d.detach())
        opt_g = self.optimizers["generator"]
        self.schedules["generator"].apply(opt_g)
        opt_g.zero_grad(set_to_none=True)
        with training_autocast(short.device):
            adv_logits = self._logits(short, fake).float()
        l1 = F.l1_loss(fake, long)
        loss_adv = F.binary_cross_entropy_with_logits(adv_logits, torch.ones_like(adv_logits))
        loss = self.l1_weight * l1 + loss_adv
        _mark(timer, "forward")
        loss.backward()
        _mark(timer, "backward")
        opt_g.step()
        self.schedules["generator"].advance()
        _mark(timer, "optimizer")
        metrics.update(loss=float(l1.detach()), loss_adv=float(loss_adv.detach()))
        return metrics
