"""Top-down pose estimation on images, with every cycle of the Multi-Cycled Transformer in the result.

    from sdpose_core.inference.predictor import Predictor, load_image
    predictor = Predictor()                          # sdpose-t; weights: SDPOSE_WEIGHTS / embedded / UNTRAINED
    result = predictor.predict(load_image("photo.jpg"))
    result.weights_info.trained                      # False: random weights, say so next to any pose
    for person in result.people:
        person.box_xywh, person.box_score
        person.cycle_keypoints[0]                     # cycle 1 (the single deployed pass): (K, 3) x, y, score
        person.keypoints, person.final_cycle          # the last cycle run for this person
        person.cycle_heatmaps[c - 1], person.crop_matrix, person.crop_rgb   # for heatmap overlays

How it runs: detect people (or take `boxes`), crop each box with the mmpose test geometry (padded
1.25, fixed to the input aspect), run ALL crops of the image as one batch through `cycles` cycles of
one forward pass (each cycle's output is a by-product of the next; `cycles=1` runs one pass only),
decode every cycle (DARK by default) back into full-resolution image pixels. `flip=True` adds the
mirrored crops to the same batch and averages the heatmaps (mmpose flip test, shifted back one pixel).

Dynamic cycles (`dynamic=True`, the paper's future-work idea): cycles run one at a time; after each
cycle c >= 2 a person whose decoded keypoints moved less than `dynamic_tolerance` heatmap pixels (the
largest move over all joints, measured between cycles c - 1 and c) stops, and its final output is
cycle c. Stopped people leave the batch (their token rows are dropped), so later cycles run on the
people still changing; `PersonPrediction.cycles_used` / `converged` report it. Two cycles are needed
to compare, so the earliest stop is cycle 2. Default tolerance: 0.5 heatmap px = 2 input px at
stride 4, about a quarter of the smallest COCO OKS sigma for a typical crop (see
scripts/measure_dynamic_cycles.py for what it saves and costs).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.detection.factory import BEST, DETECTOR_NAMES
from sdpose_core.errors import ConfigError
from sdpose_core.heatmaps import DECODE_METHODS, heatmap_peaks, heatmap_to_image_coords
from sdpose_core.inference.backend import BACKENDS, BackendPlanner, Plan, default_backend
from sdpose_core.inference.crops import crop_people, load_image, parse_boxes, sanitize_boxes, to_rgb_uint8
from sdpose_core.inference.cycles import ArrayStepper, IterCyclesStepper, TokenStepper, supports_token_dropout
from sdpose_core.inference.results import CropBatch, PersonPrediction, PredictionResult, Timings
from sdpose_core.keypoints import get_layout
from sdpose_core.models.config import check_cycles
from sdpose_core.precision import resolve_device
from sdpose_core.weights.load import WeightsInfo, load_model, load_onnx_model, module_info
from sdpose_core.weights.spec import parse_weights_spec

__all__ = ["Predictor", "load_image", "to_rgb_uint8", "DEFAULT_DYNAMIC_TOLERANCE", "configure_threads"]

DEFAULT_DYNAMIC_TOLERANCE = 0.5  # heatmap pixels
DETECTORS = DETECTOR_NAMES  # "best" (RTMDet-nano > YOLOX-Nano > SSDLite), a named one, "whole-image"


def configure_threads(num_threads: int | None = None) -> int:
    """Set torch's intra-op threads: `num_threads`, or at most the CPUs this process may use (torch's
    default can exceed a container's CPU quota and then oversubscribes). Returns the count in use."""
    if num_threads is not None:
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(int(num_threads))
    else:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if torch.get_num_threads() > available:
            torch.set_num_threads(available)
    return torch.get_num_threads()


class Predictor:
    """SDPose top-down pose estimation on whole images (see the module docstring).

    Args:
        model: a variant name ("sdpose-t", ...), an nn.Module (e.g. an SDPose you built or loaded), or None
            for "whatever `weights` contain" (sdpose-t when nothing is loaded).
        weights: None (SDPOSE_WEIGHTS, else assets/sdpose-t-default, else UNTRAINED random weights), our
            weights folder, an official .pth, a run's last.pt, "hf://org/repo[/subdir]" or an .onnx export
            (which runs on backend "onnx" unless another backend is named); with an nn.Module `model`, they
            are loaded into it strictly. See sdpose_core.weights.load_model.
        device: torch device for the torch backends.
        backend: None ($SDPOSE_BACKEND, else "auto"), "auto" (the fastest backend whose heatmaps match fp32
            torch on this machine, chosen on the first call or by `start_backend_selection()`, cached under
            the user cache folder: sdpose_core.deploy.auto_backend), "torch", "torch-bf16" (only on CPUs with native
            bf16, else fp32 with a note), "onnx" (`weights` is an .onnx export; all cycles come from one call),
            "onnx-fp32" / "onnx-int8" (exported from the weights into the cache). `result.backend` /
            `result.backend_detail` say what ran each call (sdpose_core.inference.backend).
        detector: "best" (the best person detector present, sdpose_core.detection.build_detector: RTMDet-nano,
            else YOLOX-Nano, else SSDLite; created on first use), one of them by name ("rtmdet-nano",
            "yolox-nano", "ssdlite", "ssdlite-fast"), "whole-image", an object with `.detect(image_rgb)`, a
            callable image -> boxes/scores, or None (then every `predict` call needs `boxes`).
        max_persons / min_box_size: detector limits (people kept, smallest box side in pixels).
        decode: "dark" (default, as the official test config) or "argmax".
        num_threads: torch CPU threads (None: torch's default, capped at the CPUs available).
        antialias: area-average crops that shrink more than 4x before warping (huge photos).
        weights_info: describes a `model` module you pass (else it is marked "unknown / untrained").
        cpu_speedups: on CPU, run an SDPose model as a copy with BatchNorm folded into the convolutions and
            the stem in channels_last (`sdpose_core.deploy.cpu_speedups.prepare_for_cpu`: heatmaps within ~1e-6,
            faster, see scripts/measure_predictor_speed.py). `predictor.model` stays the model as loaded; the
            copy is made on first use and again whenever `predictor.model` is replaced (weights changed in
            place after that are not seen: pass cpu_speedups=False to run `model` itself).
        allow_pickle, cache_dir, hub_timeout_s: passed to weight loading (see sdpose_core.weights.load).
    """

    def __init__(
        self,
        model: str | nn.Module | None = None,
        weights: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        backend: str | None = None,
        detector: Any = BEST,
        max_persons: int = 20,
        min_box_size: float = 8,
        *,
        decode: str = "dark",
        num_threads: int | None = None,
        antialias: bool = True,
        weights_info: WeightsInfo | None = None,
        cpu_speedups: bool = True,
        allow_pickle: bool = False,
        cache_dir: str | os.PathLike | None = None,
        hub_timeout_s: float | None = None,
    ) -> None:
        spec = parse_weights_spec(weights)
        if spec.kind == "onnx" and backend in (None, "auto"):
            backend = "onnx"  # an exported graph is its own backend ($SDPOSE_BACKEND is for torch weights)
        backend = default_backend() if backend is None else backend
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        if decode not in DECODE_METHODS:
            raise ConfigError(f"unknown decode method {decode!r}; choose one of {DECODE_METHODS}")
        if max_persons < 1 or min_box_size < 0:
            raise ConfigError(f"max_persons must be >= 1 and min_box_size >= 0, got {max_persons}, {min_box_size}")
        self.backend = backend
        self.decode = decode
        self.antialias = bool(antialias)
        self.cpu_speedups = bool(cpu_speedups)
        self._fast_model: tuple[nn.Module, nn.Module] | None = None  # (model it was made from, its fast copy)
        self.max_persons = int(max_persons)
        self.min_box_size = float(min_box_size)
        self.num_threads = configure_threads(num_threads)
        self.device = resolve_device(device)
        self.onnx_model: Any = None
        self.model: nn.Module | None = None
        if backend == "onnx":
            self.onnx_model, self.weights_info = load_onnx_model(
                spec, model if isinstance(model, str) else None, self.num_threads)
            self.config = self.onnx_model.config
            self.planner = BackendPlanner(backend, self.num_threads, self.onnx_model)
        elif isinstance(model, nn.Module):
            if spec.kind != "default":  # the weights go into the given module, strictly
                model, loaded = load_model(spec, device=self.device, into=model, allow_pickle=allow_pickle,
                                           cache_dir=cache_dir, hub_timeout_s=hub_timeout_s)
                weights_info = weights_info or loaded
            self.model = model.to(self.device).eval()
            self.weights_info = weights_info or module_info(model)
        else:
            if model is not None and not isinstance(model, str):
                raise ConfigError(f"model must be a variant name, an nn.Module or None, got {type(model).__name__}")
            self.model, self.weights_info = load_model(
                spec, model, self.device, allow_pickle=allow_pickle, cache_dir=cache_dir, hub_timeout_s=hub_timeout_s)
        if self.model is not None:
            self.config = self.model.config
            self.planner = BackendPlanner(backend, self.num_threads)
        self.layout = get_layout(int(self.config.num_keypoints))
        self._detector_spec = detector
        self._detector: Any = None
        self._detector_lock = threading.Lock()
        if detector is not None and not callable(detector) and not hasattr(detector, "detect") and (
                detector not in DETECTORS):
            raise ConfigError(f"unknown detector {detector!r}; use one of {DETECTORS}, an object with "
                              ".detect(image_rgb), a callable image -> boxes, or None (pass boxes to predict)")

    # ------------------------------------------------------------------------------------------ setup
    def start_backend_selection(self) -> bool:
        """backend="auto": choose in a background thread now (calls meanwhile run on torch and say so);
        False when there is nothing to choose (a fixed backend, or a model only torch runs)."""
        return self.planner.start_background(self.model, self.device)

    def select_backend(self, refresh: bool = False, log: Any = None) -> Any:
        """backend="auto": choose now, in this thread (cheap when cached); the BackendSelection or None."""
        return self.planner.select(self.model, self.device, refresh=refresh, log=log)

    def backend_status(self) -> str:
        """One line: the backend asked for and what runs (for the Model tab)."""
        return self.planner.status()

    @property
    def detector(self) -> Any:
        """The person detector (created on first use: loading a detector takes a moment)."""
        spec = self._detector_spec
        if spec is None:
            return None
        with self._detector_lock:
            if self._detector is None:
                from sdpose_core.detection import as_detector, build_detector

                if isinstance(spec, str):
                    self._detector = build_detector(spec, min_box_size=self.min_box_size, max_persons=self.max_persons)
                else:
                    self._detector = as_detector(spec, min_box_size=self.min_box_size,
                                                 max_persons=self.max_persons)
            return self._detector

    def _resolve_cycles(self, cycles: int | None) -> int:
        if self.onnx_model is None:
            return check_cycles(cycles, self.config.cycles)
        exported = int(self.onnx_model.cycles)
        return check_cycles(cycles, exported, available=exported,
                            available_from=f"{self.onnx_model.path.name} was exported with",
                            fix=f"re-export with export_onnx(..., cycles={cycles})")

    # ------------------------------------------------------------------------------------------ crops
    def find_boxes(self, image_rgb: np.ndarray, boxes: Any = None, detector: Any = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], float | None]:
        """(boxes, scores, source index, notes, detector ms): given boxes or detections (of `detector`, else
        the Predictor's own), sanitised."""
        notes: list[str] = []
        detector_ms = None
        if boxes is None:
            detector = self.detector if detector is None else detector
            if detector is None:
                raise ConfigError("no boxes given and the Predictor has no detector (detector=None); pass "
                                  "boxes=[[x, y, w, h], ...] or create it with detector='best'/'whole-image'")
            start = time.perf_counter()
            detections = detector.detect(image_rgb)
            detector_ms = (time.perf_counter() - start) * 1e3
            raw_boxes, raw_scores = parse_boxes(detections)
            if len(raw_scores) > self.max_persons:
                order = np.argsort(-raw_scores, kind="stable")[: self.max_persons]
                notes.append(f"{len(raw_scores)} people detected: kept the {self.max_persons} best (max_persons)")
                raw_boxes, raw_scores = raw_boxes[order], raw_scores[order]
            if len(raw_scores) == 0:
                notes.append("no people found")
        else:
            raw_boxes, raw_scores = parse_boxes(boxes)
        clean, scores, kept, box_notes = sanitize_boxes(raw_boxes, raw_scores, image_rgb.shape)
        return clean, scores, kept, notes + box_notes, detector_ms

    def crop_people(self, image: Any, boxes: Any = None) -> CropBatch:
        """The batch `predict` would run: crops, their affines and the boxes kept (for tests and the app)."""
        image_rgb = load_image(image) if isinstance(image, (str, os.PathLike)) else to_rgb_uint8(image)
        clean, scores, kept, notes, _ = self.find_boxes(image_rgb, boxes)
        return crop_people(image_rgb, clean, scores, tuple(self.config.image_size), kept, notes, self.antialias)

    # ---------------------------------------------------------------------------------------- predict
    def predict(
        self,
        image: Any,
        boxes: Any = None,
        cycles: int | None = None,
        flip: bool = False,
        dynamic: bool = False,
        dynamic_tolerance: float = DEFAULT_DYNAMIC_TOLERANCE,
        detector: Any = None,
    ) -> PredictionResult:
        """Pose of every person in `image` (HxWx3 uint8 RGB array, other arrays converted, or a file path).

        boxes: None (run the detector), Detections, or [N, 4] x, y, w, h / [N, 5] (+ score) in pixels.
        detector: an object with `.detect(image_rgb)` that finds the people of this call instead of the
            Predictor's own detector (the studio's Compare tab: the detector chosen per request);
            `result.timings.detector_ms` times it.
        cycles: the cycles to run (None: the model's training cycles, for ONNX the exported ones); dynamic:
            the most to run.
        """
        start = time.perf_counter()
        image_rgb = load_image(image) if isinstance(image, (str, os.PathLike)) else to_rgb_uint8(image)
        cycles = self._resolve_cycles(cycles)
        if dynamic and not dynamic_tolerance >= 0:
            raise ConfigError(f"dynamic_tolerance must be >= 0 heatmap pixels, got {dynamic_tolerance}")
        clean, scores, kept, notes, detector_ms = self.find_boxes(image_rgb, boxes, detector)
        crop_start = time.perf_counter()
        crops = crop_people(image_rgb, clean, scores, tuple(self.config.image_size), kept, notes, self.antialias)
        timings = Timings(detector_ms=detector_ms, preprocess_ms=(time.perf_counter() - crop_start) * 1e3)
        if cycles > self.config.cycles:
            notes.append(f"cycles {cycles} > the {self.config.cycles} cycles {self.config.name} is trained with: "
                         "the extra cycles' outputs were never trained")
        plan = self.planner.plan(self.model, self.device, cycles)
        people: list[PersonPrediction] = []
        if len(crops):
            people, plan = self._run(crops, cycles, flip, dynamic, float(dynamic_tolerance), timings, plan)
        notes += plan.notes
        if plan.kind == "onnx" and dynamic:
            notes.append("ONNX computes all cycles in one call: dynamic stopping picks each person's final cycle "
                         "but saves no compute")
        timings.total_ms = (time.perf_counter() - start) * 1e3
        return PredictionResult(
            people=people, image_size=(int(image_rgb.shape[0]), int(image_rgb.shape[1])),
            model_name=str(self.config.name), layout=self.layout, backend=plan.name, cycles=cycles,
            dynamic=bool(dynamic), dynamic_tolerance=float(dynamic_tolerance) if dynamic else None,
            flip=bool(flip), decode=self.decode, weights_info=self.weights_info, timings=timings, notes=notes,
            backend_detail=plan.detail,
        )

    __call__ = predict

    def _stepper(self, crops: CropBatch, cycles: int, flip: bool, dynamic: bool, plan: Plan) -> Any:
        flip_index = self.layout.flip_index() if flip else None
        if plan.kind == "onnx":
            graph = plan.onnx_model
            return ArrayStepper(lambda batch: graph(batch, cycles=cycles), crops.images, cycles, flip_index)
        images = crops.images.to(self.device, non_blocking=True)
        model = self._inference_model()
        if dynamic and supports_token_dropout(model):
            return TokenStepper(model, images, flip_index)
        return IterCyclesStepper(model, images, cycles, flip_index)

    def _inference_model(self) -> nn.Module:
        """`self.model`, or on CPU its BN-folded channels-last copy (see `cpu_speedups`)."""
        from sdpose_core.models.sdpose import SDPose

        model = self.model
        if not (self.cpu_speedups and self.device.type == "cpu" and isinstance(model, SDPose)):
            return model
        if self._fast_model is None or self._fast_model[0] is not model:
            from sdpose_core.deploy.cpu_speedups import prepare_for_cpu

            self._fast_model = (model, prepare_for_cpu(model.eval()))
        return self._fast_model[1]

    def _start_stepper(self, crops: CropBatch, cycles: int, flip: bool, dynamic: bool, plan: Plan) -> tuple[Any, Plan]:
        """The stepper of `plan`; an automatically chosen ONNX graph that fails here hands over to torch."""
        try:
            return self._stepper(crops, cycles, flip, dynamic, plan), plan
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            if plan.kind != "onnx" or self.backend != "auto":
                raise
            self.planner.mark_failed(plan)
            fallback = Plan("torch", f"torch fp32 (auto: {plan.name} failed: {type(exc).__name__})", cycles=cycles,
                            notes=[f"auto backend: {plan.detail} failed ({type(exc).__name__}: {exc}); torch fp32 "
                                   "ran this call and runs the next ones"])
            return self._stepper(crops, cycles, flip, dynamic, fallback), fallback

    def _run(self, crops: CropBatch, cycles: int, flip: bool, dynamic: bool, tolerance: float,
             timings: Timings, plan: Plan) -> tuple[list[PersonPrediction], Plan]:
        """Cycle by cycle: forward, decode into image pixels, and (dynamic) retire people that settled."""
        count = len(crops)
        keypoints: list[list[np.ndarray]] = [[] for _ in range(count)]
        heatmaps: list[list[np.ndarray]] = [[] for _ in range(count)]
        shifts: list[list[float]] = [[] for _ in range(count)]
        converged: list[bool | None] = [False if dynamic else None] * count
        previous = np.zeros((count, self.layout.num_keypoints, 2))
        active = np.arange(count)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=plan.bf16):
            step_start = time.perf_counter()
            stepper, plan = self._start_stepper(crops, cycles, flip, dynamic, plan)
            setup_ms = (time.perf_counter() - step_start) * 1e3
            for cycle in range(1, cycles + 1):
                step_start = time.perf_counter()
                cycle_maps = stepper.step()
                step_ms = (time.perf_counter() - step_start) * 1e3 + (setup_ms if cycle == 1 else 0.0)
                timings.pose_ms += step_ms
                if stepper.measurable:
                    timings.cycle_ms.append(step_ms)
                    timings.cycle_batch_sizes.append(len(active))
                decode_start = time.perf_counter()
                coords, scores = heatmap_peaks(cycle_maps, self.decode)
                image_xy = heatmap_to_image_coords(coords, crops.centers[active], crops.scales[active],
                                                   cycle_maps.shape[2:])
                decoded = np.concatenate([image_xy, scores[..., None]], axis=-1)
                moved = np.linalg.norm(coords - previous[active], axis=-1).max(axis=1) if cycle > 1 else None
                previous[active] = coords
                for row, person in enumerate(active):
                    keypoints[person].append(decoded[row])
                    heatmaps[person].append(cycle_maps[row])
                    if moved is not None:
                        shifts[person].append(float(moved[row]))
                timings.decode_ms += (time.perf_counter() - decode_start) * 1e3
                if dynamic and moved is not None:
                    settled = moved < tolerance
                    for person in active[settled]:
                        converged[person] = True
                    if settled.all() or cycle == cycles:
                        break
                    if settled.any():
                        stepper.keep(~settled)
                        active = active[~settled]
        heat_h, heat_w = heatmaps[0][0].shape[-2:]
        in_h, in_w = self.config.image_size
        stride = (in_w / heat_w, in_h / heat_h)
        people = [
            PersonPrediction(
                box_xywh=crops.boxes_xywh[i], box_score=float(crops.box_scores[i]), center=crops.centers[i],
                scale=crops.scales[i], crop_matrix=crops.matrices[i], heatmap_stride=stride,
                cycle_keypoints=keypoints[i], cycle_heatmaps=heatmaps[i], cycle_shifts=shifts[i],
                converged=converged[i], crop_rgb=crops.crops_rgb[i], source_index=int(crops.source_index[i]),
            )
            for i in range(count)
        ]
        return people, plan
