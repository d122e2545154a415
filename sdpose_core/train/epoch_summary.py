"""Epoch-end bookkeeping: which epoch's weights `best/` holds, and the one console line per epoch.

`best/` is chosen on cycle 1 (the deployed pass), on `TrainConfig.best_metric`: "oks" (mean OKS over the
validation people, the default) or "ap". Early in a CPU run the model predicts the average pose and AP
sits at ~0 for many epochs while the mean OKS already climbs, so AP alone would keep the first epoch's
weights; the highest AP and OKS seen are kept as well, whichever the choice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sdpose_core.errors import ConfigError

BEST_METRICS = ("oks", "ap")  # best_metric -> the cycle-1 validation number it reads
_METRIC_KEY = {"oks": "OKS", "ap": "AP"}


def check_best_metric(name: str) -> str:
    if name not in BEST_METRICS:
        raise ConfigError(f"best_metric must be one of {', '.join(BEST_METRICS)}, got {name!r}")
    return name


@dataclass
class BestTracker:
    """The epoch `best/` holds (`epoch`, its `value` of `metric`) and the highest cycle-1 AP / OKS seen."""

    metric: str
    value: float | None = None
    epoch: int | None = None
    best_ap: float | None = None
    best_oks: float | None = None

    def update(self, epoch_number: int, cycle1: dict[str, float]) -> bool:
        """Take one validation's cycle-1 metrics; True when this epoch is the new best (save `best/`)."""
        ap, oks = float(cycle1["AP"]), float(cycle1["OKS"])
        if math.isfinite(ap) and (self.best_ap is None or ap > self.best_ap):
            self.best_ap = ap
        if math.isfinite(oks) and (self.best_oks is None or oks > self.best_oks):
            self.best_oks = oks
        value = float(cycle1[_METRIC_KEY[self.metric]])
        if not math.isfinite(value) or (self.value is not None and value <= self.value):
            return False
        self.value, self.epoch = value, epoch_number
        return True

    def to_state(self) -> dict[str, Any]:
        return {"best_metric": self.metric, "best_value": self.value, "best_epoch": self.epoch,
                "best_ap": self.best_ap, "best_oks": self.best_oks}

    @classmethod
    def from_state(cls, state: dict[str, Any], metric: str) -> BestTracker:
        """From a last.pt; one written before best_metric existed chose `best/` on AP (its `best_ap`). When
        this run chooses on another metric than the saved run did, the next validation starts afresh."""
        saved_metric = state.get("best_metric", "ap")
        value = state.get("best_value", state.get("best_ap"))
        epoch = state.get("best_epoch")
        if saved_metric != metric:
            value = epoch = None
        return cls(metric, value, epoch, state.get("best_ap"), state.get("best_oks"))


def validation_columns(cycles: int) -> list[str]:
    """The per-cycle validation columns of an epoch record (NaN in epochs without validation)."""
    return [f"val_{name}_cycle{c}" for c in range(1, cycles + 1) for name in ("AP", "AP50", "OKS")]


def epoch_line(record: dict[str, Any], epochs: int, cycles: int, best: BestTracker | None) -> str:
    """`[sdpose train] epoch 3/40  step 1200  samples 38400  loss 0.00231  lr 1.0e-03  212 s (181 samples/s)
    val c1 AP 0.012 OKS 0.231 | c3 AP 0.010 OKS 0.228  best oks 0.231 (epoch 3)` from an epoch record;
    the val part only in epochs that validated, cycle 1 and the last cycle. "(partial)": the time budget
    ended the run inside this epoch."""
    parts = [
        f"epoch {record['epoch']}/{epochs}" + (" (partial)" if record.get("partial_epoch") else ""),
        f"step {record['step']}", f"samples {record['samples_seen']}",
        f"loss {record.get('train_loss', math.nan):.3g}", f"lr {record['lr']:.1e}",
        f"{record['train_time_s']:.{0 if record['train_time_s'] >= 10 else 1}f} s "
        f"({record['train_samples_per_s']:.0f} samples/s)",
    ]
    if math.isfinite(record.get("val_AP_cycle1", math.nan)):
        shown = [1, cycles] if cycles > 1 else [1]
        parts.append("val " + " | ".join(
            f"c{c} AP {record[f'val_AP_cycle{c}']:.3f} OKS {record[f'val_OKS_cycle{c}']:.3f}" for c in shown))
    if best is not None and best.epoch is not None and best.value is not None:
        parts.append(f"best {best.metric} {best.value:.3f} (epoch {best.epoch})")
    return "[sdpose train] " + "  ".join(parts)
