"""Running a batch of person crops cycle by cycle, so the Predictor can decode (and stop) after each cycle.

A stepper yields the heatmaps of cycle 1, 2, ... for the people still active (flip-test averaged when a
flip index is given) and can be told to keep only some of them:

- `TokenStepper` (SDPose models): keeps the token sequence between cycles and, when people drop out,
  indexes their rows away, so later cycles really run on a smaller batch (dynamic cycles save compute
  per person). It uses the model's public `embed`, `run_cycle` and `cycle_output`, i.e. exactly what
  `SDPose.iter_cycles` does, with the batch allowed to shrink between cycles.
- `IterCyclesStepper` (any module with `iter_cycles`, or `forward(images, cycles)` returning per-cycle
  outputs): the whole batch runs every cycle; dropped people are simply no longer reported.
- `ArrayStepper` (ONNX): all cycles come from one call; stepping hands them out one by one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.heatmaps import flip_average
from sdpose_core.models.config import check_cycles


def _merge_flip(heatmaps: np.ndarray | torch.Tensor, people: int,
                flip_index: Sequence[int] | torch.Tensor | None) -> np.ndarray | torch.Tensor:
    """Rows [0, people) are the crops, rows [people, 2 people) their mirror images: the flip test's
    average (numpy or torch); without a flip index the rows are the crops alone."""
    if flip_index is None:
        return heatmaps
    return flip_average(heatmaps[:people], heatmaps[people:], flip_index)


def _with_flipped(images: torch.Tensor, flip: bool) -> torch.Tensor:
    return torch.cat([images, torch.flip(images, dims=[3])]) if flip else images


class TokenStepper:
    """Cycle-by-cycle SDPose forward whose batch shrinks as people drop out (see module docstring)."""

    measurable = True  # each step is one cycle's compute

    def __init__(self, model: nn.Module, images: torch.Tensor, flip_index: Sequence[int] | None) -> None:
        self.model = model
        self.people = int(images.shape[0])
        self.flip_index = None if flip_index is None else torch.as_tensor(
            np.asarray(flip_index), dtype=torch.long, device=images.device)
        self._images: torch.Tensor | None = _with_flipped(images, flip_index is not None)
        self._tokens: torch.Tensor | None = None

    def step(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = self.model.embed(self._images)
            self._images = None  # the crops are not needed once embedded
        self._tokens = self.model.run_cycle(self._tokens)
        heatmaps = self.model.cycle_output(self._tokens).heatmaps
        return _merge_flip(heatmaps, self.people, self.flip_index).float().cpu().numpy()

    def keep(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.all():
            return
        rows = np.flatnonzero(np.concatenate([mask, mask]) if self.flip_index is not None else mask)
        assert self._tokens is not None, "keep() is called after step()"
        self._tokens = self._tokens.index_select(0, torch.as_tensor(rows, device=self._tokens.device))
        self.people = int(mask.sum())


class IterCyclesStepper:
    """Any model with `iter_cycles(images, cycles)` (lazy) or `forward(images, cycles=...)` (all at once)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, cycles: int,
                 flip_index: Sequence[int] | None) -> None:
        self.people = int(images.shape[0])
        self.flip_index = None if flip_index is None else torch.as_tensor(
            np.asarray(flip_index), dtype=torch.long, device=images.device)
        batch = _with_flipped(images, flip_index is not None)
        self.measurable = hasattr(model, "iter_cycles")
        self._outputs: Iterator[Any] = (
            iter(model.iter_cycles(batch, cycles)) if self.measurable else iter(model(batch, cycles=cycles))
        )
        self._active = torch.arange(self.people, device=images.device)

    def step(self) -> np.ndarray:
        output = next(self._outputs)
        heatmaps = _merge_flip(output.heatmaps, self.people, self.flip_index)
        if len(self._active) != self.people:
            heatmaps = heatmaps.index_select(0, self._active)
        return heatmaps.float().cpu().numpy()

    def keep(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self._active = self._active[torch.as_tensor(mask, device=self._active.device)]


class ArrayStepper:
    """Per-cycle heatmaps computed in one call (an ONNX model), handed out one cycle at a time."""

    measurable = False

    def __init__(self, run: Callable[[np.ndarray], Sequence[np.ndarray]], images: torch.Tensor, cycles: int,
                 flip_index: Sequence[int] | None) -> None:
        people = int(images.shape[0])
        batch = _with_flipped(images, flip_index is not None).cpu().numpy()
        outputs = list(run(np.ascontiguousarray(batch, dtype=np.float32)))
        check_cycles(cycles, available=len(outputs), available_from="the model returned")
        self._outputs = iter([_merge_flip(np.asarray(heatmaps, dtype=np.float32), people, flip_index)
                              for heatmaps in outputs[:cycles]])
        self._active = np.arange(people)

    def step(self) -> np.ndarray:
        return next(self._outputs)[self._active]

    def keep(self, mask: np.ndarray) -> None:
        self._active = self._active[np.asarray(mask, dtype=bool)]


def supports_token_dropout(model: nn.Module) -> bool:
    """True for models whose cycles can be run on a shrinking batch (SDPose's public token API)."""
    return all(callable(getattr(model, name, None)) for name in ("embed", "run_cycle", "cycle_output"))
