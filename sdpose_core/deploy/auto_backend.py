"""`backend="auto"`: the fastest backend whose heatmaps match fp32 torch on this machine, chosen once.

    selection = select_backend(model, threads=2)     # cached: a later process reads the decision
    selection.chosen_for(1)                           # e.g. "onnx-int8" for the single pass
    print(selection.summary())                        # every candidate: ms/person, its difference, verdict

Candidates (`CANDIDATES`): "torch" (fp32; BatchNorm folded + channels-last, what the Predictor runs on CPU),
"torch-bf16" (bf16 autocast; only on CPUs with native bf16, `sdpose_core.precision`), "onnx-fp32" (an
`export_onnx` graph on onnxruntime) and "onnx-int8" (`quantize_int8` of that graph). For each graph
size in `graph_cycles` (the single pass and the model's training cycles) every candidate runs the
check crops — real held-out person crops of the shared COCO data (`load_real_crops`), random inputs
with a note where that is absent — and is compared with the plain fp32 torch model, all cycles:

    TOLERANCE: max |heatmap - fp32 heatmap| <= 10% of the fp32 heatmap peak, and at least 95% of the
    keypoints (argmax + quarter offset) within 1 heatmap pixel (4 input pixels at stride 4) of fp32's.

A candidate that misses it, or fails to build or run (no onnxruntime, export error), is refused with
the reason; of the rest, the fastest at one person per call (median of round-robin rounds) is chosen,
and torch fp32 is always there to fall back to. The exported graphs and the decision are cached under
`cache_root()/backends/<key>` (sdpose_core.deploy.backend_cache; the key covers the weights hash, candidates,
runtime versions, CPU and this code), so a later process only reads a small JSON file.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.deploy.backend_cache import (
    prune_old_choices,
    selection_key,
    writable_folder,
    write_json_atomic,
)
from sdpose_core.paths import cache_root

CANDIDATES = ("torch", "torch-bf16", "onnx-fp32", "onnx-int8")
LABELS = {"torch": "torch fp32", "torch-bf16": "torch bf16", "onnx": "onnxruntime (ONNX file)",
          "onnx-fp32": "onnxruntime fp32", "onnx-int8": "onnxruntime int8"}
TOLERANCE = {"max_heatmap_diff_of_peak": 0.10, "keypoint_shift_heatmap_px": 1.0, "min_share_within": 0.95}
TIMING_ROUNDS = 7
CHECK_CROPS = 8
Runner = Callable[[np.ndarray, int], list[np.ndarray]]  # (crops (B, 3, H, W), cycles) -> heatmaps per cycle


@dataclass
class CandidateResult:
    """One candidate for one graph size: its check against fp32 torch, its speed, the verdict."""

    name: str
    cycles: int
    accepted: bool
    reason: str
    ms_per_person: float | None = None
    max_heatmap_diff: float | None = None
    heatmap_peak: float | None = None
    keypoints_within: float | None = None  # share of keypoints within the tolerance's shift
    path: str | None = None  # the graph file (ONNX candidates)
    build_s: float = 0.0

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


@dataclass
class BackendSelection:
    """The decision for one model on this machine (see the module docstring)."""

    key: str
    folder: str
    results: dict[int, list[CandidateResult]]  # graph cycles -> every candidate
    chosen: dict[int, str]  # graph cycles -> candidate name
    check_inputs: str
    tolerance: dict[str, float]
    facts: dict[str, Any]
    measured_at: float
    from_cache: bool = False
    notes: list[str] = field(default_factory=list)

    def chosen_for(self, cycles: int) -> str | None:
        """The candidate chosen for a `cycles`-cycle forward; None when no graph of that size was chosen."""
        return self.chosen.get(int(cycles))

    def result(self, name: str, cycles: int) -> CandidateResult | None:
        return next((r for r in self.results.get(int(cycles), []) if r.name == name), None)

    def graph_path(self, name: str, cycles: int) -> Path | None:
        found = self.result(name, cycles)
        return Path(found.path) if found is not None and found.path else None

    def describe(self, cycles: int) -> str:
        """One line for the UI and logs: the backend chosen for `cycles`, with its and torch fp32's ms/person."""
        name = self.chosen_for(cycles)
        if name is None:
            return f"torch fp32 (auto: no {cycles}-cycle graph was chosen, torch runs it)"
        chosen, reference = self.result(name, cycles), self.result("torch", cycles)
        speed = ""
        if chosen is not None and chosen.ms_per_person is not None:
            speed = f": {chosen.ms_per_person:.1f}"
            if reference is not None and reference.ms_per_person is not None and name != "torch":
                speed += f" vs torch fp32 {reference.ms_per_person:.1f}"
            speed += f" ms/person at {cycles} cycle(s)"
        return f"{LABELS.get(name, name)} (auto: fastest matching fp32 on this machine{speed})"

    def summary(self) -> str:
        lines = [f"backend choice ({'cached' if self.from_cache else 'measured now'}, {self.facts.get('cpu')}, "
                 f"{self.facts.get('threads')} threads; checked on {self.check_inputs}; cache {self.folder}):"]
        for cycles, results in sorted(self.results.items()):
            for r in results:
                speed = f"{r.ms_per_person:7.1f} ms/person" if r.ms_per_person is not None else "           -    "
                mark = "CHOSEN" if self.chosen.get(cycles) == r.name else ("ok" if r.accepted else "refused")
                lines.append(f"  {cycles} cycle(s)  {r.label:<18} {speed}  {mark:<7} {r.reason}")
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = {str(c): [asdict(r) for r in rs] for c, rs in self.results.items()}
        data["chosen"] = {str(c): n for c, n in self.chosen.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendSelection:
        values = dict(data)
        values["results"] = {int(c): [CandidateResult(**r) for r in rs] for c, rs in data["results"].items()}
        values["chosen"] = {int(c): n for c, n in data["chosen"].items()}
        return cls(**values)


def tolerance_text(tolerance: Mapping[str, float] = TOLERANCE) -> str:
    return (f"max heatmap diff <= {tolerance['max_heatmap_diff_of_peak']:.0%} of the fp32 peak and >= "
            f"{tolerance['min_share_within']:.0%} of keypoints within {tolerance['keypoint_shift_heatmap_px']:g} "
            "heatmap px of fp32")


def compare_heatmaps(reference: Sequence[np.ndarray], other: Sequence[np.ndarray],
                     tolerance: Mapping[str, float] = TOLERANCE) -> tuple[bool, float, float, float]:
    """(within tolerance, max abs diff, fp32 peak, share of keypoints within the shift) over all cycles."""
    from sdpose_core.heatmaps import heatmap_peaks

    if len(other) < len(reference):
        return False, float("inf"), 0.0, 0.0
    diff, peak, within = 0.0, 0.0, []
    for ref, out in zip(reference, other, strict=False):
        ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        if out.shape != ref.shape or not np.isfinite(out).all():
            return False, float("inf"), float(np.abs(ref).max()), 0.0
        diff, peak = max(diff, float(np.abs(out - ref).max())), max(peak, float(np.abs(ref).max()))
        ref_xy, _ = heatmap_peaks(ref, "argmax")
        out_xy, _ = heatmap_peaks(out, "argmax")
        within.append(np.linalg.norm(ref_xy - out_xy, axis=-1) <= tolerance["keypoint_shift_heatmap_px"])
    share = float(np.concatenate([w.reshape(-1) for w in within]).mean())
    ok = diff <= tolerance["max_heatmap_diff_of_peak"] * peak and share >= tolerance["min_share_within"]
    return ok, diff, peak, share


def _torch_runner(model: nn.Module, bf16: bool = False) -> Runner:
    def run(images: np.ndarray, cycles: int) -> list[np.ndarray]:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model(torch.from_numpy(np.ascontiguousarray(images, np.float32)), cycles=cycles)
        return [o.heatmaps.float().numpy() for o in outputs]

    return run


def _onnx_runner(path: Path, threads: int) -> Runner:
    from sdpose_core.deploy.onnx_runtime import OnnxPoseModel

    graph = OnnxPoseModel(path, threads=threads)
    return lambda images, cycles: graph(images, cycles=cycles)


def _build_onnx(model: nn.Module, folder: Path, cycles: int, int8: bool) -> Path:
    """The cached fp32 graph of `cycles` cycles (exported now when absent), or its int8 version."""
    from sdpose_core.deploy.export import export_onnx

    fp32 = folder / f"sdpose_c{cycles}.onnx"
    if not fp32.is_file():
        partial = folder / f".sdpose_c{cycles}.partial.onnx"
        export_onnx(model, partial, cycles=cycles, check=False)
        partial.replace(fp32)
    if not int8:
        return fp32
    from sdpose_core.deploy.quantize import quantize_int8

    target = folder / f"sdpose_c{cycles}.int8.onnx"
    if not target.is_file():
        partial = folder / f".sdpose_c{cycles}.int8.partial.onnx"
        report = quantize_int8(fp32, partial)
        Path(report.path).replace(target)
    return target


def _time_round_robin(runners: Mapping[str, Runner], crop: np.ndarray, cycles: int, rounds: int) -> dict[str, float]:
    """Median ms of one call per runner (one person), the runners taking turns so load hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for round_index in range(rounds + 1):
        for name, run in runners.items():
            start = time.perf_counter()
            run(crop, cycles)
            if round_index:  # the first round warms up
                samples[name].append((time.perf_counter() - start) * 1e3)
            time.sleep(0.005)  # let one runtime's worker threads go idle before the other's run
    return {name: statistics.median(values) for name, values in samples.items()}


def _check_crops(model: nn.Module, crops: np.ndarray | None) -> tuple[np.ndarray, str, list[str]]:
    from sdpose_core.deploy.crops import load_real_crops

    size = tuple(int(v) for v in model.config.image_size)
    if crops is not None:
        return np.ascontiguousarray(crops, np.float32), f"{len(crops)} given crops", []
    real, source = load_real_crops(size, limit=CHECK_CROPS)
    if source is not None:
        return real, source, []
    rng = np.random.default_rng(0)
    return (rng.standard_normal((4, 3, *size)).astype(np.float32), "4 random inputs",
            ["shared data not found: the candidates were checked on random inputs, which says little about "
             "real crops (set SDPOSE_DATA)"])


def exportable(model: Any) -> bool:
    """SDPose models (config, iter_cycles) can be exported; other modules only run on torch."""
    return hasattr(model, "config") and callable(getattr(model, "iter_cycles", None)) and hasattr(
        getattr(model, "config", None), "image_size")


_MEMO: dict[str, BackendSelection] = {}
_MEMO_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}


def select_backend(
    model: nn.Module,
    threads: int | None = None,
    graph_cycles: Sequence[int] | None = None,
    candidates: Sequence[str] = CANDIDATES,
    crops: np.ndarray | None = None,
    tolerance: Mapping[str, float] = TOLERANCE,
    extra_candidates: Mapping[str, Callable[[int], Runner]] | None = None,
    cache_dir: str | Path | None = None,
    refresh: bool = False,
    log: Callable[[str], None] | None = None,
) -> BackendSelection:
    """Choose (or read the cached choice of) the fastest backend that matches fp32 (module docstring).

    graph_cycles: the forward sizes to choose for (default: 1 and the model's training cycles).
    extra_candidates: name -> (cycles -> Runner), more candidates to consider (never cached on disk).
    cache_dir: the cache root (default `cache_root()`); refresh: measure again even when cached.
    """
    from sdpose_core.deploy.cpu_speedups import prepare_for_cpu
    from sdpose_core.precision import cpu_has_native_bf16

    threads = int(threads or torch.get_num_threads())
    model = model.eval()
    cycles_list = sorted({int(c) for c in (graph_cycles or (1, int(model.config.cycles)))})
    names = list(candidates) + list(extra_candidates or {})
    key, facts = selection_key(model, threads, names, cycles_list, dict(tolerance))
    folder, note = writable_folder(Path(cache_dir or cache_root()) / "backends" / key)
    with _MEMO_LOCK:
        if not refresh and key in _MEMO:
            return _MEMO[key]
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:
        cached = folder / "selection.json"
        if not refresh and key in _MEMO:
            return _MEMO[key]
        if not refresh and not extra_candidates and cached.is_file():
            try:
                import json

                selection = BackendSelection.from_dict(json.loads(cached.read_text()))
                if all(Path(r.path).is_file() for rs in selection.results.values() for r in rs
                       if r.path and r.accepted):
                    selection.from_cache = True
                    os.utime(folder)  # in use: pruning keeps the most recently used choices
                    with _MEMO_LOCK:
                        _MEMO[key] = selection
                    return selection
            except (ValueError, KeyError, TypeError):
                pass  # unreadable or from another version: measure again
        say = log or (lambda text: None)
        images, check_inputs, notes = _check_crops(model, crops)
        notes += [note] if note else []
        fast = prepare_for_cpu(model)

        def build(name: str, cycles: int) -> tuple[Runner, str | None]:
            if extra_candidates and name in extra_candidates:
                return extra_candidates[name](cycles), None
            if name in ("torch", "torch-bf16"):
                return _torch_runner(fast, bf16=name == "torch-bf16"), None
            path = _build_onnx(model, folder, cycles, int8=name == "onnx-int8")
            return _onnx_runner(path, threads), str(path)
        results: dict[int, list[CandidateResult]] = {}
        chosen: dict[int, str] = {}
        for cycles in cycles_list:
            reference = _torch_runner(model)(images, cycles)
            accepted: dict[str, Runner] = {}
            results[cycles] = []
            for name in names:
                if name == "torch-bf16" and not cpu_has_native_bf16():
                    results[cycles].append(CandidateResult(name, cycles, False, "not native here: this CPU has no "
                                                           "native bf16 (sdpose_core.precision)"))
                    continue
                if name not in CANDIDATES and name not in (extra_candidates or {}):
                    results[cycles].append(CandidateResult(name, cycles, False, f"unknown candidate {name!r}"))
                    continue
                say(f"auto backend: checking {LABELS.get(name, name)} at {cycles} cycle(s)")
                start = time.perf_counter()
                try:
                    runner, path = build(name, cycles)
                    ok, diff, peak, share = compare_heatmaps(reference, runner(images, cycles), tolerance)
                except Exception as exc:  # noqa: BLE001 - any failure of a candidate only refuses it
                    results[cycles].append(CandidateResult(
                        name, cycles, False, f"failed: {type(exc).__name__}: {str(exc)[:300]}",
                        build_s=time.perf_counter() - start))
                    continue
                ok = ok or name == "torch"  # fp32 torch is the fallback whatever its (~1e-6) difference
                verdict = (f"matches fp32 (diff {diff:.2g} of peak {peak:.2g}, {share:.0%} of keypoints within)"
                           if ok else f"outside the tolerance ({tolerance_text(tolerance)}): diff "
                                      f"{diff:.2g} of peak {peak:.2g}, {share:.0%} of keypoints within")
                results[cycles].append(CandidateResult(name, cycles, ok, verdict, None, diff, peak, share, path,
                                                       time.perf_counter() - start))
                if ok:
                    accepted[name] = runner
            speeds = _time_round_robin(accepted, images[:1], cycles, TIMING_ROUNDS)
            for result in results[cycles]:
                if result.name in speeds:
                    result.ms_per_person = round(speeds[result.name], 3)
            chosen[cycles] = min(speeds, key=speeds.get) if speeds else "torch"
        selection = BackendSelection(key, str(folder), results, chosen, check_inputs, dict(tolerance), facts,
                                     time.time(), False, notes)
        if not extra_candidates:
            try:
                write_json_atomic(cached, selection.to_dict())
                prune_old_choices(folder.parent)
            except OSError as exc:
                selection.notes.append(f"could not cache the decision in {cached}: {exc}")
        with _MEMO_LOCK:
            _MEMO[key] = selection
        return selection
