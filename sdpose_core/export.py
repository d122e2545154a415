"""ONNX export of SDPose heatmaps and an onnxruntime CPU backend.

    from sdpose_core.export import export_onnx, OnnxPoseModel
    report = export_onnx(model, "sdpose_t.onnx")        # single pass; checked against torch
    onnx_model = OnnxPoseModel("sdpose_t.onnx", threads=2)
    [heatmaps_cycle1] = onnx_model(crops)              # crops: float32 (B, 3, H, W), RGB, ImageNet-normalised

The graph has one input `images` (B, 3, H, W) and one output per cycle, `heatmaps_cycle1` ...
`heatmaps_cycle{k}` (B, K, Hh, Wh): the cycles share one trace, so exporting k cycles computes the
first k passes once (a 1-cycle export is exactly the deployed single pass). The ModelConfig JSON,
the number of exported cycles and the precision are stored in the ONNX `metadata_props`, so
`OnnxPoseModel` needs nothing but the file. int8 quantization lives in `sdpose_core.quantize`.
"""

from __future__ import annotations

import copy
import json
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdpose_core.errors import CheckpointError, ConfigError, DataError, SDPoseError
from sdpose_core.models.config import ModelConfig
from sdpose_core.paths import data_root
from sdpose_core.precision import cpu_has_int8_dot

INPUT_NAME = "images"
OUTPUT_PREFIX = "heatmaps_cycle"
META_FORMAT = "sdpose.format"
META_CONFIG = "sdpose.config"
META_CYCLES = "sdpose.cycles"
META_PRECISION = "sdpose.precision"
META_QUANTIZATION = "sdpose.quantization"  # int8 graphs: JSON {method, calibration, types}
META_WEIGHTS = "sdpose.weights"
FORMAT_VERSION = "1"
DEFAULT_ATOL = 1e-4
# held-out people for checks (COCO val images); coco_mini_train is kept for int8 calibration
CHECK_SPLIT = "coco/mmpose_coco"
CALIBRATION_SPLIT = "coco/coco_mini_train"


class ExportError(SDPoseError):
    """The exported graph does not reproduce the torch model."""


def output_names(cycles: int) -> list[str]:
    return [f"{OUTPUT_PREFIX}{c}" for c in range(1, cycles + 1)]


class _HeatmapsPerCycle(nn.Module):
    """Exposes only the heatmaps of cycles 1..cycles, as a tuple (one graph output each)."""

    def __init__(self, model: nn.Module, cycles: int) -> None:
        super().__init__()
        self.model = model
        self.cycles = cycles

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(output.heatmaps for output in self.model.iter_cycles(images, self.cycles))


def load_real_crops(
    image_size: Sequence[int], limit: int | None = 8, split: str = CHECK_SPLIT, root: Path | None = None
) -> tuple[np.ndarray, str | None]:
    """Ground-truth person crops of a shared COCO split, preprocessed exactly as the model expects:
    float32 (N, 3, H, W). Returns (crops, description) or an empty array and None when the shared data
    is absent. People are taken evenly spread over the split when `limit` is smaller than it."""
    from sdpose_core.data import TopDownDataset

    folder = (root or data_root()) / split
    ann_file = folder / "person_keypoints.json"
    height, width = (int(v) for v in image_size)
    if not ann_file.is_file():
        return np.zeros((0, 3, height, width), np.float32), None
    dataset = TopDownDataset(ann_file, folder / "images", train=False, image_size=(height, width),
                             heatmap_size=(max(1, height // 4), max(1, width // 4)))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    indices = np.linspace(0, len(dataset) - 1, num=count).round().astype(int) if count else []
    crops = [dataset[int(i)]["image"].numpy() for i in indices]
    if not crops:
        return np.zeros((0, 3, height, width), np.float32), None
    return np.stack(crops).astype(np.float32), f"{len(crops)} GT person crops of {split}"


@dataclass
class ExportReport:
    """What was written and how closely onnxruntime reproduces torch (max abs heatmap difference)."""

    path: Path
    cycles: int
    opset: int
    dynamic_batch: bool
    output_names: list[str]
    size_bytes: int
    export_s: float
    checks: dict[str, float] = field(default_factory=dict)  # check name -> max abs diff over all cycles
    tolerance: float = DEFAULT_ATOL
    notes: list[str] = field(default_factory=list)

    @property
    def max_abs_diff(self) -> float:
        return max(self.checks.values(), default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["max_abs_diff"] = self.max_abs_diff
        return data

    def summary(self) -> str:
        checks = ", ".join(f"{name}: {diff:.2e}" for name, diff in self.checks.items()) or "not checked"
        lines = [f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {self.opset}, cycles 1..{self.cycles}, "
                 f"{'dynamic' if self.dynamic_batch else 'fixed'} batch) in {self.export_s:.1f} s",
                 f"max |onnxruntime - torch| heatmaps: {checks} (tolerance {self.tolerance:g})"]
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def write_metadata(onnx_model: Any, values: dict[str, str]) -> None:
    """Set (replace) string entries of an onnx.ModelProto's metadata_props."""
    kept = [(p.key, p.value) for p in onnx_model.metadata_props if p.key not in values]
    del onnx_model.metadata_props[:]
    for key, value in [*kept, *values.items()]:
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata_props of an ONNX file (without loading its weights into a session)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types for unreadable files
        raise CheckpointError(f"cannot read ONNX file {path}: {exc}") from exc
    return {p.key: p.value for p in proto.metadata_props}


def max_abs_diff(reference: Sequence[np.ndarray], other: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())
               for a, b in zip(reference, other, strict=True))


def torch_heatmaps(model: nn.Module, images: np.ndarray, cycles: int) -> list[np.ndarray]:
    """Heatmaps of cycles 1..cycles from the torch model (float32, CPU, inference mode)."""
    with torch.inference_mode():
        outputs = model(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)), cycles=cycles)
    return [output.heatmaps.float().numpy() for output in outputs]


def export_onnx(
    model: nn.Module,
    out_path: str | os.PathLike,
    cycles: int = 1,
    opset: int = 17,
    dynamic_batch: bool = True,
    check: bool = True,
    atol: float = DEFAULT_ATOL,
    real_crops: int = 8,
    weights_info: str | None = None,
) -> ExportReport:
    """Export heatmaps of cycles 1..`cycles` to ONNX and check them against torch.

    The check runs random inputs and (where the shared data exists) `real_crops` real person crops
    through both and raises ExportError when any heatmap differs by more than `atol`. The model itself
    is not modified (a CPU copy in eval mode is traced). `weights_info` is stored in the metadata
    (e.g. where the weights came from).
    """
    import onnx

    config: ModelConfig = model.config
    cycles = int(cycles)
    if cycles < 1:
        raise ConfigError(f"cycles must be >= 1, got {cycles}")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a private CPU copy in eval mode: export toggles training flags on the traced module tree
    traced_model = copy.deepcopy(model).cpu().float().eval()
    from sdpose_core.cpu_inference import prepare_for_onnx

    # the graph the benchmark times: patch embedding as one strided convolution (same outputs)
    traced_model = prepare_for_onnx(traced_model, copy_model=False)
    wrapper = _HeatmapsPerCycle(traced_model, cycles).eval()
    names = output_names(cycles)
    # trace with batch 2 so that no reshape can specialise on a batch of one
    example = torch.zeros(2 if dynamic_batch else 1, 3, *config.image_size)
    dynamic_axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]} if dynamic_batch else None
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the TorchScript exporter is what runs without onnxscript; its trace warnings are about the
        # input-shape check, which is constant for a fixed image size
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(out), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    proto.doc_string = f"SDPose {config.name}: heatmaps of cycles 1..{cycles}"
    metadata = {META_FORMAT: FORMAT_VERSION, META_CONFIG: json.dumps(config.to_dict()),
                META_CYCLES: str(cycles), META_PRECISION: "fp32"}
    if weights_info:
        metadata[META_WEIGHTS] = weights_info
    write_metadata(proto, metadata)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    report = ExportReport(path=out, cycles=cycles, opset=opset, dynamic_batch=dynamic_batch, output_names=names,
                          size_bytes=out.stat().st_size, export_s=time.perf_counter() - start, tolerance=atol)
    if check:
        check_against_torch(traced_model, report, real_crops)
    return report


def check_against_torch(model: nn.Module, report: ExportReport, real_crops: int = 8) -> None:
    """Fill `report.checks`; raise ExportError when onnxruntime and torch differ by more than the tolerance."""
    session = OnnxPoseModel(report.path)
    height, width = model.config.image_size
    generator = np.random.default_rng(0)
    inputs = {f"random x{n}": generator.standard_normal((n, 3, height, width)).astype(np.float32)
              for n in ((1, 3) if report.dynamic_batch else (1,))}
    crops, source = load_real_crops((height, width), limit=real_crops) if real_crops > 0 else (None, None)
    if source:
        inputs[source] = crops
    elif real_crops > 0:
        report.notes.append(f"no real crops: shared data not found under {data_root()}; checked random inputs only")
    else:
        report.notes.append("real-crop check skipped (real_crops=0); checked random inputs only")
    for name, images in inputs.items():
        report.checks[name] = max_abs_diff(torch_heatmaps(model, images, report.cycles), session(images))
    if report.max_abs_diff > report.tolerance:
        raise ExportError(f"{report.path}: onnxruntime heatmaps differ from torch by {report.max_abs_diff:.2e} "
                          f"> {report.tolerance:g} ({report.checks}); try another opset or report the model config")


def session_options(threads: int | None = None, spin: bool = False) -> Any:
    """onnxruntime CPU options: `threads` intra-op threads (None: all cores), sequential execution.

    `spin=False` lets the worker threads sleep as soon as a run ends instead of busy-waiting for the
    next one: on a 2-core CPU spinning workers take the cores that decode the heatmaps, run the
    detector or torch (measured: torch calls right after a spinning session ran several times slower).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: the quantized graphs' shape warnings are noise
    return options


class OnnxPoseModel:
    """An exported SDPose graph on onnxruntime's CPU provider.

    `__call__(images)` takes float32 (B, 3, H, W) crops (RGB, ImageNet-normalised) and returns the
    per-cycle heatmaps [(B, K, Hh, Wh), ...] for the exported cycles (`cycles` limits how many are
    returned; all exported cycles are computed by the graph regardless). A graph exported with a fixed
    batch of one is run image by image. `threads`: intra-op threads (None: all cores); `spin`: see
    `session_options`.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        self.metadata = read_metadata(self.path)
        missing = [key for key in (META_CONFIG, META_CYCLES) if key not in self.metadata]
        if missing:
            raise CheckpointError(f"{self.path} has no SDPose metadata ({', '.join(missing)} missing); "
                                  "export it with sdpose_core.export.export_onnx")
        try:
            self.config = ModelConfig.from_dict(json.loads(self.metadata[META_CONFIG]))
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{self.path}: unreadable {META_CONFIG} metadata: {exc}") from exc
        self.cycles = int(self.metadata[META_CYCLES])
        self.precision = self.metadata.get(META_PRECISION, "fp32")
        self.weights_info = self.metadata.get(META_WEIGHTS)
        self.notes = [] if self.int8_types != "u8s8" or cpu_has_int8_dot() else [
            f"{self.path.name} is int8 with u8 x s8 products, which saturate on this CPU (no VNNI / AMX): its "
            "heatmaps can be far from fp32; quantize it again on this machine (sdpose export --int8 picks u8 x u8)"]
        for note in self.notes:
            warnings.warn(note, stacklevel=2)
        self.threads = threads
        self.session = ort.InferenceSession(str(self.path), session_options(threads, spin),
                                            providers=["CPUExecutionProvider"])
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.fixed_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.output_names != output_names(self.cycles):
            raise CheckpointError(f"{self.path}: outputs {self.output_names} do not match the "
                                  f"{self.cycles} cycles in its metadata")

    @property
    def int8_types(self) -> str | None:
        """"u8s8" / "u8u8" for an int8 graph (graphs made before the types were recorded are u8s8), else None."""
        if not self.precision.startswith("int8"):
            return None
        try:
            return str(json.loads(self.metadata.get(META_QUANTIZATION, "{}")).get("types", "u8s8"))
        except ValueError:
            return "u8s8"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the crops the graph takes."""
        return tuple(self.config.image_size)  # type: ignore[return-value]

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return tuple(self.config.heatmap_size)  # type: ignore[return-value]

    @property
    def num_keypoints(self) -> int:
        return int(self.config.num_keypoints)

    def __call__(self, images: np.ndarray | torch.Tensor, cycles: int | None = None) -> list[np.ndarray]:
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        images = np.ascontiguousarray(images, dtype=np.float32)
        expected = (3, *self.input_size)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise DataError(f"{self.path.name} expects float32 crops of shape (B, {', '.join(map(str, expected))}), "
                            f"got {images.shape}")
        count = self.cycles if cycles is None else int(cycles)
        if not 1 <= count <= self.cycles:
            raise ConfigError(f"{self.path.name} was exported with {self.cycles} cycle(s); cannot return {count}; "
                              f"re-export with export_onnx(..., cycles={count})")
        names = self.output_names[:count]
        if self.fixed_batch is None or images.shape[0] == self.fixed_batch:
            return self.session.run(names, {self.input_name: images})
        parts = [self.session.run(names, {self.input_name: images[i:i + 1]}) for i in range(images.shape[0])]
        return [np.concatenate([p[c] for p in parts]) for c in range(count)]

    def __repr__(self) -> str:
        return (f"OnnxPoseModel({self.path.name}: {self.config.name}, {self.precision}, cycles 1..{self.cycles}, "
                f"input {self.input_size}, threads {self.threads or 'all'})")


def run_export(
    out: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    model: str | None = None,
    cycles: int = 1,
    opset: int = 17,
    dynamic_batch: bool = True,
    int8: str | None = None,
    int8_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """CLI-shaped export: resolve the weights like the Predictor does (`sdpose_core.weights`), export to
    `out`, optionally quantize (`int8` = "hybrid" / "dynamic" / "static") to `int8_out` (default:
    `<out stem>.int8.onnx`), print the reports and return them as a dict. The weights' description
    (UNTRAINED for random weights) is stored in the ONNX metadata."""
    from sdpose_core.weights import resolve_weights

    torch_model, info = resolve_weights(weights, model)
    report = export_onnx(torch_model, out, cycles=cycles, opset=opset, dynamic_batch=dynamic_batch,
                         weights_info=info.description)
    print(f"weights: {info.description}")
    print(report.summary())
    result: dict[str, Any] = {"weights": info.to_dict(), "export": report.to_dict()}
    if int8:
        from sdpose_core.quantize import quantize_int8

        target = Path(int8_out) if int8_out else Path(out).with_suffix(".int8.onnx")
        quant = quantize_int8(out, target, method=int8)
        print(quant.summary())
        result["int8"] = quant.to_dict()
    return result
