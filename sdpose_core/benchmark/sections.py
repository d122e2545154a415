"""Sections of `sdpose benchmark` that time other things than SDPose's own table (`sdpose_core.benchmark.speed`):
the person detector, MediaPipe BlazePose, PP-TinyPose (ncnn) and the automatic backend choice; and the
round-robin timer they all use."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.errors import SDPoseError

Call = tuple[Callable[[], Any], int]  # (function, people per call)


def time_round_robin(calls: dict[str, Call], rounds: int, warmup: int = 1, pause_s: float = 0.02,
                     cpu_ms: dict[str, float] | None = None) -> dict[str, float]:
    """Median milliseconds per person of each call, timed one after another in every round.

    Calls run in the dict's order; when the runtime changes (the name's part before the first space,
    e.g. "torch" / "onnxruntime") the timer pauses `pause_s` so that the threads of one runtime have gone
    idle before the other's are timed (two thread pools fighting over 2 cores distort both).
    `cpu_ms`, when given, receives each call's median process CPU milliseconds per person (all threads):
    the compute it cost, which other load on the machine inflates far less than the wall-clock time.
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    cpu_samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + rounds):
        runtime = None
        for name, (fn, people) in calls.items():
            if name.split(" ", 1)[0] != runtime:
                runtime = name.split(" ", 1)[0]
                time.sleep(pause_s)
            cpu_start, start = time.process_time(), time.perf_counter()
            fn()
            if round_index >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3 / people)
                cpu_samples[name].append((time.process_time() - cpu_start) * 1e3 / people)
    if cpu_ms is not None:
        cpu_ms.update({name: statistics.median(values) for name, values in cpu_samples.items()})
    return {name: statistics.median(values) for name, values in samples.items()}


def detector_section(image: np.ndarray, rounds: int) -> dict[str, Any]:
    """SSDLite single pass and default (6 passes), and the detector the studio uses ("best") when it is
    another one (sdpose_core.detection.build_detector)."""
    from sdpose_core.detection import build_detector

    try:
        single, default = build_detector("ssdlite-fast"), build_detector("ssdlite")
    except SDPoseError as exc:
        return {"error": str(exc)}
    best = build_detector("best")
    calls = {"cv2 single_pass": (lambda: single.detect(image), 1), "cv2 default": (lambda: default.detect(image), 1)}
    if best.name != default.name:
        calls["onnxruntime best"] = (lambda: best.detect(image), 1)
    cpu_ms: dict[str, float] = {}
    medians = time_round_robin(calls, rounds, cpu_ms=cpu_ms)
    return {"ms_per_image": {k.split(" ", 1)[1]: round(v, 2) for k, v in medians.items()},
            "cpu_ms_per_image": {k.split(" ", 1)[1]: round(v, 2) for k, v in cpu_ms.items()},
            "passes": {"single_pass": single.passes, "default": default.passes, "best": best.passes},
            "best_name": best.name,
            "people_found": {"single_pass": len(single.detect(image)), "default": len(default.detect(image)),
                             "best": len(best.detect(image))}}


def mediapipe_section(image: np.ndarray, box: np.ndarray, rounds: int) -> dict[str, Any]:
    from sdpose_core.inference.baselines import MediaPipePose

    try:
        with MediaPipePose() as pose:
            found = pose.predict(image, [box])[0].found
            cpu_ms: dict[str, float] = {}
            medians = time_round_robin({"mediapipe": (lambda: pose.predict(image, [box]), 1)}, rounds, cpu_ms=cpu_ms)
    except SDPoseError as exc:
        return {"error": str(exc)}
    return {"ms_per_person": round(medians["mediapipe"], 2), "cpu_ms_per_person": round(cpu_ms["mediapipe"], 2),
            "pose_found": bool(found)}


def tinypose_section(rounds: int, folder: str | Path | None = None) -> dict[str, Any]:
    """PP-TinyPose per person (ncnn, one thread as its README recommends) at each of its input sizes, on the
    same real crops SDPose is timed on; {"error": why} without the ncnn package or the model files."""
    from sdpose_core.deploy.crops import load_real_crops
    from sdpose_core.inference import tinypose

    why = tinypose.available(tinypose.SIZES[0], folder)
    if why:
        return {"error": why}
    result: dict[str, Any] = {"ms_per_person": {}, "cpu_ms_per_person": {}, "threads": 1, "inputs": {}}
    for size in tinypose.SIZES:
        key = f"{size[0]}x{size[1]}"
        try:
            pose = tinypose.TinyPose(size, folder, threads=1)
        except SDPoseError as exc:
            result.setdefault("errors", {})[key] = str(exc)
            continue
        crops, source = load_real_crops(size, limit=8)
        if source is None:
            crops, source = np.random.default_rng(0).standard_normal((8, 3, *size)).astype(np.float32), "random"
        cpu_ms: dict[str, float] = {}
        medians = time_round_robin({"ncnn tinypose": (lambda p=pose, x=crops[:1]: p.heatmaps(x), 1)}, rounds,
                                   cpu_ms=cpu_ms)
        result["ms_per_person"][key] = round(medians["ncnn tinypose"], 2)
        result["cpu_ms_per_person"][key] = round(cpu_ms["ncnn tinypose"], 2)
        result["inputs"][key] = source
    return result


def auto_backend_section(model: torch.nn.Module, threads: int, workdir: Path) -> dict[str, Any]:
    """What `backend="auto"` picks for this model on this machine, measured now (a fresh cache folder)."""
    from sdpose_core.deploy.auto_backend import select_backend, tolerance_text

    try:
        selection = select_backend(model, threads=threads, cache_dir=workdir / "auto_cache", refresh=True)
    except Exception as exc:  # noqa: BLE001 - the benchmark reports it and goes on
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"chosen": {f"cycles{c}": name for c, name in selection.chosen.items()},
            "described": {f"cycles{c}": selection.describe(c) for c in selection.chosen},
            "tolerance": tolerance_text(selection.tolerance), "summary": selection.summary(),
            "candidates": selection.to_dict()["results"]}
