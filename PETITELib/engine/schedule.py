"""Learning-rate schedule: optional linear warm-up, then cosine annealing to zero, per step."""
from __future__ import annotations

import math

import torch


class CosineSchedule:
    """Learning rate ``base_lr`` x factor(step) over ``total_steps`` optimizer steps.

    factor rises linearly from 1/warmup to 1 over ``warmup_steps`` steps, then follows
    0.5 (1 + cos(pi t)) with t going from 0 to 1 over the remaining steps. The state is a
    single step counter (JSON), so a resumed job continues the same curve.
    """

    def __init__(self, base_lr: float, total_steps: int, warmup_steps: int = 0):
        self.base_lr = float(base_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(0, min(int(warmup_steps), self.total_steps - 1))
        self.step = 0

    def lr(self) -> float:
        """Learning rate for the current step."""
        if self.step < self.warmup_steps:
            return self.base_lr * (self.step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (self.step - self.warmup_steps) / span)
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * t))

    def apply(self, optimizer: torch.optim.Optimizer) -> None:
        """Set every parameter group of ``optimizer`` to the current learning rate."""
        for group in optimizer.param_groups:
            group["lr"] = self.lr()

    def advance(self) -> None:
        """Move to the next step."""
        self.step += 1

    def state_dict(self) -> dict:
        """JSON-serialisable state."""
        return {"base_lr": self.base_lr, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved :meth:`state_dict`."""
        self.step = int(state["step"])
