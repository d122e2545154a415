"""Learning-rate schedule of the official configs: mmcv `step` policy with linear warm-up.

mmcv (1.x) semantics, reproduced exactly:
- regular lr at epoch e (0-based) = base_lr * gamma ** (number of milestones <= e);
- for the first `warmup_iters` iterations (global, 0-based index i) the lr is
  regular_lr * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio)), so iteration 0 trains at
  warmup_ratio x lr and iteration `warmup_iters` at the full lr.

The schedule is a pure function of (epoch, iteration), so resuming only needs those two counters.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import torch


class WarmupStepSchedule:
    """Sets each parameter group's lr before every optimisation step (call `apply`)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 500,
        warmup_ratio: float = 0.001,
    ) -> None:
        self.optimizer = optimizer
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        self.warmup_iters = int(warmup_iters)
        self.warmup_ratio = float(warmup_ratio)
        # `initial_lr` mirrors torch schedulers, so a resumed optimizer keeps its base lr.
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_lrs = list(self.base_lrs)

    def factor(self, epoch: int, iteration: int) -> float:
        """Multiplier on the base lr at 0-based `epoch` and global 0-based `iteration`."""
        factor = self.gamma ** bisect.bisect_right(self.milestones, epoch)
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            k = (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio)
            factor *= 1.0 - k
        return factor

    def apply(self, epoch: int, iteration: int) -> list[float]:
        """Set the lr for the step about to be taken; returns the lrs set."""
        factor = self.factor(epoch, iteration)
        self.last_lrs = [base * factor for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self.last_lrs, strict=True):
            group["lr"] = lr
        return self.last_lrs

    def state_dict(self) -> dict[str, Any]:
        return {
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "warmup_iters": self.warmup_iters,
            "warmup_ratio": self.warmup_ratio,
            "base_lrs": list(self.base_lrs),
            "last_lrs": list(self.last_lrs),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Milestones/warm-up come from the (possibly changed) run config; only the base lrs and the
        # last lrs are state. Keeping base_lrs means a resumed run decays from the same starting lr.
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.last_lrs = [float(v) for v in state["last_lrs"]]
