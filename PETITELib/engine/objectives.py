"""Training objectives: one optimisation step of the generator (and of the discriminator).

``L1Objective`` (UNETR): mean absolute error between the network output and the long scan.
``AdversarialObjective`` (CvT-GAN): ``l1_weight`` x L1 + a patch-GAN loss from a
discriminator that sees the pair [short, candidate] as two channels. During pre-training
the discriminator learns too; during fine-tuning it stays frozen and only passes gradients.
Tensors are (B, 1, 64, 64, 64) float32 in normalised units.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .schedule import CosineSchedule


def trainable_parameters(model: nn.Module):
    """``(name, parameter)`` pairs of ``model`` that require gradients, in definition order."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def adamw(model: nn.Module, lr: float, weight_decay: float, betas=(0.9, 0.999)) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of ``model`` only (frozen ones get no optimizer state)."""
    params = [p for _, p in trainable_parameters(model)]
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)


class L1Objective:
    """Generator-only training with an L1 loss; ``optimizers`` names each optimizer for checkpoints."""

    def __init__(self, generator: nn.Module, optimizer: torch.optim.Optimizer, schedule: CosineSchedule):
        self.generator = generator
        self.optimizers = {"generator": optimizer}
        self.schedules = {"generator": schedule}
        self.models = {"generator": generator}

    def step(self, short: torch.Tensor, long: torch.Tensor) -> Dict[str, float]:
        """One optimisation step on a batch; returns ``{"loss": L1}``."""
        optimizer = self.optimizers["generator"]
        self.schedules["generator"].apply(optimizer)
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(self.generator(short), long)
        loss.backward()
        optimizer.step()
        self.schedules["generator"].advance()
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
                 discriminator_schedule: Optional[CosineSchedule] = None, l1_weight: float = 100.0):
        self.generator = generator
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

    def step(self, short: torch.Tensor, long: torch.Tensor) -> Dict[str, float]:
        """Discriminator step (pre-training only), then generator step; returns the losses."""
        fake = self.generator(short)
        metrics = {}
        if self.trains_discriminator:
            opt_d = self.optimizers["discriminator"]
            self.schedules["discriminator"].apply(opt_d)
            opt_d.zero_grad(set_to_none=True)
            real_logits = self._logits(short, long)
            fake_logits = self._logits(short, fake.detach())
            loss_d = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
            loss_d.backward()
            opt_d.step()
            self.schedules["discriminator"].advance()
            metrics["loss_d"] = float(loss_d.detach())
        opt_g = self.optimizers["generator"]
        self.schedules["generator"].apply(opt_g)
        opt_g.zero_grad(set_to_none=True)
        adv_logits = self._logits(short, fake)
        l1 = F.l1_loss(fake, long)
        loss_adv = F.binary_cross_entropy_with_logits(adv_logits, torch.ones_like(adv_logits))
        loss = self.l1_weight * l1 + loss_adv
        loss.backward()
        opt_g.step()
        self.schedules["generator"].advance()
        metrics.update(loss=float(l1.detach()), loss_adv=float(loss_adv.detach()))
        return metrics
