"""Run logs: a JSON-lines file with every record, CSV tables per record kind, TensorBoard if installed.

Files in the run directory:
- `metrics.jsonl`: one JSON object per line, {"kind": "iter"|"epoch"|"val", ...};
- `train_iters.csv` (per logged iteration) and `train_epochs.csv` (per epoch, validation APs included);
- `tensorboard/` event files when the `tensorboard` package is importable.
Only rank 0 writes (the trainer gives other ranks a disabled logger).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path
from typing import Any


def _summary_writer_class() -> Any:
    """torch's SummaryWriter, or None when tensorboard is not installed.

    tensorboard imports all of TensorFlow when TF happens to be installed (seconds and a screen of
    CUDA warnings) although writing scalars needs none of it; `tensorboard.compat.notf` is
    tensorboard's own switch to use its built-in stub instead. Set only if TF is not loaded already.
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


def _plain(value: Any) -> Any:
    """Numbers from tensors/numpy as Python floats/ints so json and csv write them plainly."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


class MetricsLogger:
    def __init__(self, run_dir: str | Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._csv_headers: dict[str, list[str]] = {}
        self._tb = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            writer_class = _summary_writer_class()
            if writer_class is not None:
                self._tb = writer_class(log_dir=str(self.run_dir / "tensorboard"))

    @property
    def jsonl_path(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    def csv_path(self, kind: str) -> Path:
        return self.run_dir / {"iter": "train_iters.csv", "epoch": "train_epochs.csv"}.get(kind, f"{kind}.csv")

    def log(self, kind: str, record: dict[str, Any], step: int | None = None) -> None:
        """Append one record to the JSON-lines log, the kind's CSV and TensorBoard (numeric fields)."""
        if not self.enabled:
            return
        record = {key: _plain(value) for key, value in record.items()}
        with self.jsonl_path.open("a") as fh:
            fh.write(json.dumps({"kind": kind, **record}) + "\n")
        self._append_csv(kind, record)
        if self._tb is not None and step is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._tb.add_scalar(f"{kind}/{key}", value, step)

    def _append_csv(self, kind: str, record: dict[str, Any]) -> None:
        path = self.csv_path(kind)
        header = self._csv_headers.get(kind)
        if header is None and path.is_file() and path.stat().st_size > 0:
            # A resumed run appends under the header the first run wrote.
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), None)
        write_header = header is None
        # Keys that first appear after the header was written go to the JSON-lines log only.
        header = list(record) if header is None else list(header)
        self._csv_headers[kind] = header
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore", restval="")
            if write_header:
                writer.writeheader()
            writer.writerow(record)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of a run's `metrics.jsonl` (an empty list when the run has not logged yet)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def validation_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One point per validation, in step order: step, samples, train_s, the lr of the last logged iteration
    before it, and `cycles` = {cycle: that cycle's val record}. A resumed run that validated a step twice
    keeps the later record."""
    points: dict[int, dict[str, Any]] = {}
    lr = None
    for record in records:
        if record.get("kind") == "iter":
            lr = record.get("lr", lr)
        elif record.get("kind") == "val" and record.get("step") is not None:
            point = points.setdefault(int(record["step"]), {
                "step": int(record["step"]), "samples": record.get("samples_seen"),
                "train_s": record.get("train_elapsed_s"), "lr": lr, "cycles": {}})
            point["cycles"][int(record["cycle"])] = record
    return [points[step] for step in sorted(points)]
