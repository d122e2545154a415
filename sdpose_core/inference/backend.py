"""Which backend runs a Predictor call: the fixed one asked for, or the automatic choice (`backend="auto"`).

    planner = BackendPlanner("auto", num_threads=2)
    plan = planner.plan(model, device, cycles=3)     # Plan: name, detail (for timing lines), ONNX graph or torch
    planner.start_background(model, device)          # the app: choose in a thread, torch until it is done

Backends: "auto" (`sdpose_core.deploy.auto_backend`: the fastest candidate whose heatmaps match fp32 torch on
this machine, chosen once per process, cached on disk), "torch" (fp32), "torch-bf16" (bf16 autocast,
used only on CPUs with native bf16: elsewhere fp32 with a note), "onnx" (an exported .onnx file given as
weights), "onnx-fp32" / "onnx-int8" (exported / quantized from the weights into the user cache).

What stays on torch under "auto", and says so in the result's notes: models that are not SDPose modules
(cannot be exported), devices other than the CPU, a cycle count without a chosen graph (graphs exist for
the single pass and the model's training cycles), calls made while the choice is still being measured
in the background, and a graph that failed at run time (it is not used again in this process).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sdpose_core.deploy.auto_backend import LABELS, BackendSelection, exportable, select_backend
from sdpose_core.errors import ConfigError

BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-fp32", "onnx-int8")
BACKEND_ENV = "SDPOSE_BACKEND"  # the default backend when none is passed (else "auto")


def default_backend() -> str:
    """`$SDPOSE_BACKEND` (checked) or "auto"."""
    value = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if value not in BACKENDS:
        raise ConfigError(f"{BACKEND_ENV}={value!r} is not a backend; use one of {BACKENDS}")
    return value


@dataclass
class Plan:
    """How one call runs: `name` (a BACKENDS entry), `detail` (the human line for timing displays), the
    ONNX graph to run (None: torch) and whether torch runs under bf16 autocast."""

    name: str
    detail: str
    onnx_model: Any = None
    bf16: bool = False
    cycles: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "torch" if self.onnx_model is None else "onnx"


class BackendPlanner:
    """Holds the requested backend, the (lazily made) automatic choice and the ONNX sessions it opened."""

    def __init__(self, requested: str, num_threads: int | None = None, onnx_model: Any = None) -> None:
        if requested not in BACKENDS:
            raise ConfigError(f"unknown backend {requested!r}; choose one of {BACKENDS}")
        self.requested = requested
        self.num_threads = num_threads
        self.onnx_file_model = onnx_model
        self._selection: BackendSelection | None = None
        self._selected_for: nn.Module | None = None
        self._error: str | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._graphs: dict[tuple[str, int], Any] = {}
        self._failed: set[tuple[str, int]] = set()

    # ----------------------------------------------------------------------------------- choosing
    def _candidates(self) -> tuple[str, ...]:
        return ("torch", self.requested) if self.requested in ("onnx-fp32", "onnx-int8") else (
            "torch", "torch-bf16", "onnx-fp32", "onnx-int8")

    def _why_torch(self, model: nn.Module | None, device: torch.device) -> str | None:
        if model is None or not exportable(model):
            return "the model is not an SDPose module, which only torch runs"
        if device.type != "cpu":
            return f"on {device} only torch runs the model (the ONNX candidates are CPU graphs)"
        return None

    def select(self, model: nn.Module, device: torch.device, refresh: bool = False,
               log: Any = None) -> BackendSelection | None:
        """Choose now (in this thread); None when only torch can run this model here."""
        if self.requested not in ("auto", "onnx-fp32", "onnx-int8") or self._why_torch(model, device):
            return None
        with self._lock:
            if self._selection is not None and self._selected_for is model and not refresh:
                return self._selection
        try:
            selection = select_backend(model, threads=self.num_threads, candidates=self._candidates(),
                                       refresh=refresh, log=log)
        except Exception as exc:  # noqa: BLE001 - a failed choice leaves torch running, with the reason
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
            if self.requested != "auto":
                raise ConfigError(f"backend {self.requested!r} could not be prepared: {exc}") from exc
            return None
        with self._lock:
            self._selection, self._selected_for, self._error = selection, model, None
            self._graphs.clear()
        return selection

    def start_background(self, model: nn.Module, device: torch.device) -> bool:
        """Choose in a daemon thread (calls meanwhile run on torch); False when there is nothing to choose."""
        if self.requested != "auto" or self._why_torch(model, device):
            return False
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return True
            if self._selection is not None and self._selected_for is model:
                return False
            self._thread = threading.Thread(target=self.select, args=(model, device), daemon=True,
                                            name="sdpose-backend-choice")
            self._thread.start()
        return True

    @property
    def choosing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def selection(self) -> BackendSelection | None:
        return self._selection

    def wait(self, timeout_s: float | None = None) -> BackendSelection | None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return self._selection

    # ------------------------------------------------------------------------------------- planning
    def _torch_plan(self, cycles: int, device: torch.device, why: str | None, bf16: bool = False) -> Plan:
        notes = [f"auto backend: {why}; torch fp32 ran it"] if why else []
        name = "torch-bf16" if bf16 else "torch"
        detail = LABELS[name] + (f" (auto: {why})" if why else "")
        return Plan(name, detail, bf16=bf16, cycles=cycles, notes=notes)

    def _bf16_plan(self, cycles: int, device: torch.device) -> Plan:
        from sdpose_core.precision import resolve_amp

        choice = resolve_amp(True, device, "prediction")
        if choice.dtype == torch.bfloat16:
            return Plan("torch-bf16", LABELS["torch-bf16"], bf16=True, cycles=cycles)
        return Plan("torch", f"{LABELS['torch']} (torch-bf16 asked for: {choice.reason})", cycles=cycles,
                    notes=[choice.reason])

    def plan(self, model: nn.Module | None, device: torch.device, cycles: int) -> Plan:
        """The backend for one `cycles`-cycle call (see the module docstring for when auto stays on torch)."""
        if self.requested == "onnx":
            return Plan("onnx", f"{LABELS['onnx']} {self.onnx_file_model.path.name}",
                        onnx_model=self.onnx_file_model, cycles=cycles)
        if self.requested == "torch":
            return Plan("torch", LABELS["torch"], cycles=cycles)
        if self.requested == "torch-bf16":
            return self._bf16_plan(cycles, device)
        why = self._why_torch(model, device)
        if why and self.requested != "auto":
            raise ConfigError(f"backend {self.requested!r} cannot run here: {why}; use backend='torch'")
        if why:
            return self._torch_plan(cycles, device, why)
        if self.choosing:
            return self._torch_plan(cycles, device, "the backend is still being chosen in the background")
        selection = self.select(model, device)  # cached after the first call
        if selection is None:
            return self._torch_plan(cycles, device, f"choosing failed ({self._error})")
        name = selection.chosen_for(cycles) if self.requested == "auto" else self.requested
        if selection.graph_path(name or "", cycles) is None and name not in ("torch", "torch-bf16"):
            if self.requested != "auto" and cycles in selection.results:
                raise ConfigError(f"backend {self.requested!r} failed here: "
                                  f"{selection.result(self.requested, cycles).reason}")
            return self._torch_plan(cycles, device, f"no {cycles}-cycle graph was prepared (graphs: cycles "
                                                    f"{', '.join(map(str, sorted(selection.results)))})")
        if (name, cycles) in self._failed:
            return self._torch_plan(cycles, device, f"{LABELS[name]} failed earlier in this process")
        if name in ("torch", "torch-bf16"):
            plan = Plan(name, selection.describe(cycles), bf16=name == "torch-bf16", cycles=cycles)
            return plan
        graph = self._graph(name, cycles, selection)
        detail = selection.describe(cycles) if self.requested == "auto" else LABELS[name]
        notes = []
        if self.requested != "auto" and not selection.result(name, cycles).accepted:
            notes.append(f"{LABELS[name]}: {selection.result(name, cycles).reason}")
        return Plan(name, detail, onnx_model=graph, cycles=cycles, notes=notes)

    def _graph(self, name: str, cycles: int, selection: BackendSelection) -> Any:
        from sdpose_core.deploy.onnx_runtime import OnnxPoseModel

        with self._lock:
            graph = self._graphs.get((name, cycles))
            if graph is None:
                graph = OnnxPoseModel(selection.graph_path(name, cycles), threads=self.num_threads)
                self._graphs[(name, cycles)] = graph
            return graph

    def mark_failed(self, plan: Plan) -> None:
        """A graph raised at run time: never use it again in this process (torch takes over)."""
        with self._lock:
            self._failed.add((plan.name, plan.cycles))
            self._graphs.pop((plan.name, plan.cycles), None)

    # --------------------------------------------------------------------------------------- status
    def status(self) -> str:
        """Markdown-free text for the Model tab: what was asked for and what runs (per graph size)."""
        if self.requested != "auto":
            return f"backend {self.requested} (fixed)"
        if self.choosing:
            return "backend auto: still measuring the candidates in the background (torch fp32 runs meanwhile)"
        if self._selection is None:
            return "backend auto: not chosen yet (chosen on the first prediction)" + (
                f"; the last attempt failed: {self._error}" if self._error else "")
        chosen = ", ".join(f"{LABELS.get(n, n)} for {c} cycle(s)" for c, n in sorted(self._selection.chosen.items()))
        return f"backend auto: {chosen}"
