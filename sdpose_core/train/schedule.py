"""Learning-rate schedule of the official configs: mmcv `step` policy with linear warm-up.

mmcv (1.x) semantics, reproduced exactly:
- regular lr at epoch e (0-based) = base_lr * gamma ** (number of milestones <= e);
- for the first `warmup_iters` iterations (global, 0-based index i) the lr is
  regular_lr * (1 - (1 - i / warmup_iters) * (1 - warmup_ratio)), so iteration 0 trains at
  warmup_ratio x lr and iteration `warmup_iters` at the full lr.

The schedule is a pure function of (epoch, iteration), so resuming only needs those two counters.

The trainer gives the drops in optimisation steps (`by="step"`, a `StepPlan`): without a time budget a drop at
epoch e is step e x steps-per-epoch, which is the epoch rule above step for step; with a time budget
(`TimeBudget`) the run's total steps are estimated from the measured step time and the drops sit at
`lr_step_fractions` of that total (re-estimated at each epoch end; a drop already taken never moves).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
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
        by: str = "epoch",
    ) -> None:
        if by not in ("epoch", "step"):
            raise ValueError(f"milestones count epochs or steps, got by={by!r}")
        self.optimizer = optimizer
        self.by = by  # what the milestones count: 0-based epochs (mmcv) or global 0-based steps
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
        position = epoch if self.by == "epoch" else iteration
        factor = self.gamma ** bisect.bisect_right(self.milestones, position)
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
            "by": self.by,
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


ESTIMATE_AFTER_STEPS = 20  # the first estimate of a budgeted run's total steps, after this many timed steps


@dataclass
class StepPlan:
    """A run's length in optimisation steps and the steps from which each lr drop applies."""

    total_steps: int
    drop_steps: list[int]
    estimated: bool = False  # True once the total comes from a time budget's measured step time

    @classmethod
    def for_epochs(cls, step_epochs: Sequence[int], steps_per_epoch: int, epochs: int) -> StepPlan:
        """The plan of a run of `epochs` whole epochs: drops at the milestone epochs' first steps."""
        return cls(epochs * steps_per_epoch, [int(e) * steps_per_epoch for e in step_epochs])

    def reestimate(self, fractions: Sequence[float], total_steps: int, steps_done: int) -> None:
        """Put the drops not yet taken at `fractions` of a new total; a drop before step `steps_done`
        (already applied to a step) stays where it was, and one that would now lie in the past comes at once."""
        self.total_steps = max(int(total_steps), int(steps_done))
        moved: list[int] = []
        for fraction, old in zip(fractions, self.drop_steps, strict=True):
            step = old if old < steps_done else max(steps_done, max(1, round(fraction * self.total_steps)))
            moved.append(max(step, moved[-1]) if moved else step)
        self.drop_steps = moved
        self.estimated = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepPlan:
        return cls(int(d["total_steps"]), [int(v) for v in d["drop_steps"]], bool(d.get("estimated", False)))


@dataclass
class TimeBudget:
    """Training wall time of a run against its budget, and the step time it measures.

    Counted: the training steps with their data loading (from `start()` before an epoch's first batch to each
    `step_done()`); not counted: validation and checkpoint writing, so candidates with different validation
    settings get the same training time. `elapsed_s` is stored in last.pt, so a resumed run continues it.
    """

    budget_s: float | None
    elapsed_s: float = 0.0
    val_every_s: float | None = None
    last_val_s: float = 0.0  # elapsed_s at the last validation (for val_every_s)
    save_every_s: float | None = None
    last_save_s: float = 0.0  # elapsed_s at the last mid-epoch last.pt (for save_every_s)
    _since: float | None = field(default=None, repr=False)
    _steps_here: int = field(default=0, repr=False)  # steps timed by this process
    _timed_here_s: float = field(default=0.0, repr=False)  # their time, without this process's first step

    def start(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        self._since = None

    def step_done(self) -> None:
        now = time.perf_counter()
        if self._since is not None:
            spent = now - self._since
            self.elapsed_s += spent
            if self._steps_here > 0:  # the process's first step also pays for start-up: not a typical step
                self._timed_here_s += spent
            self._steps_here += 1
        self._since = now

    @property
    def spent(self) -> bool:
        return self.budget_s is not None and self.elapsed_s >= self.budget_s

    @property
    def steps_timed(self) -> int:
        return self._steps_here

    def seconds_per_step(self) -> float | None:
        """Mean training time of a step in this process (None before two steps were timed)."""
        if self._steps_here < 2:
            return None
        return self._timed_here_s / (self._steps_here - 1)

    def estimate_total_steps(self, steps_done: int) -> int | None:
        """Steps done + the steps the rest of the budget holds at the measured step time."""
        per_step = self.seconds_per_step()
        if self.budget_s is None or per_step is None:
            return None
        return steps_done + int(max(0.0, self.budget_s - self.elapsed_s) / max(per_step, 1e-9))

    def validation_due(self) -> bool:
        return self.val_every_s is not None and self.elapsed_s - self.last_val_s >= self.val_every_s

    def validated(self) -> None:
        self.last_val_s = self.elapsed_s

    def checkpoint_due(self) -> bool:
        return self.save_every_s is not None and self.elapsed_s - self.last_save_s >= self.save_every_s

    def checkpointed(self) -> None:
        self.last_save_s = self.elapsed_s

    def state_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.elapsed_s, "last_val_s": self.last_val_s, "last_save_s": self.last_save_s}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        self.last_val_s = float(state.get("last_val_s", 0.0))
        self.last_save_s = float(state.get("last_save_s", self.elapsed_s))
