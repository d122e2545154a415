"""Speed benchmark on this machine: SDPose-T per person (torch eager, onnxruntime fp32 and int8) for 1, 2
and 3 cycles, where its time goes (stem, embedding, one cycle, head, decoding), the person detector,
MediaPipe BlazePose, PP-TinyPose (ncnn, when installed and its files are there: per person at 128x96 and
256x192, and SDPose's single pass / PP-TinyPose at the same input size), torch CPU speed-ups, the int8
methods, and what backend="auto" chooses. bf16 rows are timed in the main table only on CPUs with native
bf16 (elsewhere marked "not native here"); the speed-up table times bf16 anyway and marks it.

    python -m sdpose_core.benchmark.speed [--json out.json] [--threads N] [--weights DIR] [--image-size H W] [--quick]
    OMP_WAIT_POLICY=PASSIVE python -m sdpose_core.benchmark.speed      # on a shared / busy machine (see notes)

Models timed: by default the embedded default's configuration (assets/sdpose-t-default/config.json, or
SDPose-T at 128x96 input with 32x24 heatmaps, the configuration trained for it, until that exists) and
the paper's 256x192; `--image-size H W` times SDPose-T at that input only, `--weights` the given model.

Every number is the median of several rounds after a warm-up. The variants of one table are timed
round-robin (one call of each per round), so a change in the machine's load hits all of them alike and
their ratios stay meaningful on a shared machine; the load average before and after is recorded.
Goals (2-core CPU): single pass <= 10 ms/person, <= 0.5x MediaPipe per person, and <= 0.45x the 3-cycle
cost. Timings do not depend on the weights (random init unless `weights` is given); the int8 accuracy
columns do, and the report says which weights were used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.benchmark.models import QUICK_MODEL, benchmark_models  # noqa: F401  (QUICK_MODEL re-exported)
from sdpose_core.benchmark.report import GOALS, format_report, goal_ratios  # noqa: F401  (GOALS re-exported)
from sdpose_core.benchmark.sections import (  # noqa: F401  (time_round_robin re-exported)
    Call,
    auto_backend_section,
    detector_section,
    mediapipe_section,
    time_round_robin,
    tinypose_section,
)
from sdpose_core.deploy.cpu_speedups import prepare_for_cpu, prepare_for_onnx
from sdpose_core.deploy.crops import load_real_crops
from sdpose_core.deploy.export import export_onnx
from sdpose_core.deploy.onnx_runtime import OnnxPoseModel
from sdpose_core.deploy.quantize import DEFAULT_METHOD, QUANT_METHODS, quantize_int8
from sdpose_core.paths import data_root
from sdpose_core.precision import cpu_summary

BACKENDS = ("torch eager", "torch fast", "torch fast bf16", "onnxruntime fp32", "onnxruntime int8")
BF16_ROW = "torch fast bf16"  # timed only on CPUs with native bf16 (sdpose_core.precision)
NOT_NATIVE = "not native here: this CPU has no native bf16, where bf16 autocast is emulated (see torch_speedups)"


def _batch_of(crops: np.ndarray, batch: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])), dtype=np.float32)


def _real_image_and_box() -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The first shared mmpose_coco image (RGB) and its largest GT person box (x, y, w, h)."""
    import cv2

    folder = data_root() / "coco" / "mmpose_coco"
    ann_file = folder / "person_keypoints.json"
    if not ann_file.is_file():
        return None, None, "shared data not found"
    data = json.loads(ann_file.read_text())
    image = data["images"][0]
    boxes = [a["bbox"] for a in data["annotations"] if a["image_id"] == image["id"] and not a.get("iscrowd")]
    bgr = cv2.imread(str(folder / "images" / image["file_name"]), cv2.IMREAD_COLOR)
    if bgr is None or not boxes:
        return None, None, f"cannot read {image['file_name']}"
    box = np.asarray(max(boxes, key=lambda b: b[2] * b[3]), dtype=np.float64)
    return bgr[:, :, ::-1].copy(), box, f"coco/mmpose_coco/images/{image['file_name']} ({bgr.shape[1]}x{bgr.shape[0]})"


def _synthetic_image(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), np.array([220.0, 60.0, 200.0, 400.0])


def _forward(model: torch.nn.Module, images: torch.Tensor, cycles: int, bf16: bool = False) -> Any:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(images, cycles=cycles)


def _sdpose_section(model: torch.nn.Module, crops: np.ndarray, cycles: list[int], batches: list[int],
                    rounds: dict[int, int], int8_method: str, workdir: Path) -> dict[str, Any]:
    """ms/person for every backend x batch x cycles, and how the int8 graphs differ from fp32.

    "torch fast" is `prepare_for_cpu` (BN folded, channels_last stem); "torch fast bf16" adds bf16 autocast.
    The ONNX graphs are exported from `prepare_for_onnx(model)` (patch embedding as a strided Conv).
    """
    from sdpose_core.precision import cpu_has_native_bf16

    fast = prepare_for_cpu(model)
    native_bf16 = cpu_has_native_bf16()
    graphs: dict[str, dict[int, OnnxPoseModel]] = {"onnxruntime fp32": {}, "onnxruntime int8": {}}
    int8_reports = {}
    for c in cycles:
        fp32_path = workdir / f"sdpose_c{c}.onnx"
        export_onnx(prepare_for_onnx(model), fp32_path, cycles=c, check=False)
        report = quantize_int8(fp32_path, workdir / f"sdpose_c{c}.int8.onnx", method=int8_method)
        int8_reports[f"cycles{c}"] = report.to_dict()
        graphs["onnxruntime fp32"][c] = OnnxPoseModel(fp32_path, threads=torch.get_num_threads())
        graphs["onnxruntime int8"][c] = OnnxPoseModel(report.path, threads=torch.get_num_threads())
    timed = [b for b in BACKENDS if b != BF16_ROW or native_bf16]
    table: dict[str, dict[str, dict[str, float]]] = {backend: {} for backend in timed}
    cpu_table: dict[str, dict[str, dict[str, float]]] = {backend: {} for backend in timed}
    for batch in batches:
        images = _batch_of(crops, batch)
        tensor = torch.from_numpy(images)
        calls: dict[str, Call] = {}
        for backend, net, bf16 in (("torch eager", model, False), ("torch fast", fast, False),
                                   (BF16_ROW, fast, True)):  # torch first, then onnxruntime
            if backend not in table:
                continue
            for c in cycles:
                calls[f"{backend}|{c}"] = (lambda c=c, net=net, x=tensor, bf16=bf16: _forward(net, x, c, bf16), batch)
        for backend, by_cycles in graphs.items():
            for c in cycles:
                calls[f"{backend}|{c}"] = (lambda g=by_cycles[c], x=images: g(x), batch)
        cpu_ms: dict[str, float] = {}
        with torch.inference_mode():
            medians = time_round_robin(calls, rounds[batch], cpu_ms=cpu_ms)
        for key, ms in medians.items():
            backend, c = key.split("|")
            table[backend].setdefault(f"batch{batch}", {})[f"cycles{c}"] = round(ms, 2)
            cpu_table[backend].setdefault(f"batch{batch}", {})[f"cycles{c}"] = round(cpu_ms[key], 2)
    not_timed = {} if native_bf16 else {BF16_ROW: NOT_NATIVE}
    return {"ms_per_person": table, "cpu_ms_per_person": cpu_table, "int8": int8_reports, "not_timed": not_timed}


def _speedups_section(model: torch.nn.Module, crops: np.ndarray, batches: list[int],
                      rounds: dict[int, int]) -> dict[str, Any]:
    """Single pass, torch eager: each speed-up's time relative to the plain model and its heatmap change."""
    variants = {
        "plain": (model, False, False),
        "fold_bn": (prepare_for_cpu(model), False, False),
        "channels_last": (prepare_for_cpu(model, fold_bn=False, channels_last=True), True, False),
        "fold_bn+channels_last": (prepare_for_cpu(model, channels_last=True), True, False),
        "bf16 autocast": (model, False, True),
        "fold_bn+bf16 autocast": (prepare_for_cpu(model), False, True),
    }

    def run(variant: tuple[torch.nn.Module, bool, bool], images: torch.Tensor) -> torch.Tensor:
        net, channels_last, bf16 = variant
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return net(images, cycles=1)[0].heatmaps

    from sdpose_core.precision import cpu_has_native_bf16

    result: dict[str, Any] = {"ms_per_person": {}, "ratio_to_plain": {}, "max_abs_heatmap_diff": {},
                              "not_native_here": [] if cpu_has_native_bf16() else
                              [name for name, (_, _, bf16) in variants.items() if bf16]}
    with torch.inference_mode():
        reference = run(variants["plain"], torch.from_numpy(crops)).float()
        for name, variant in variants.items():
            diff = (run(variant, torch.from_numpy(crops)).float() - reference).abs().max()
            result["max_abs_heatmap_diff"][name] = float(diff)
        for batch in batches:
            tensor = torch.from_numpy(_batch_of(crops, batch))
            calls = {f"torch {name}": (lambda v=v, x=tensor: run(v, x), batch) for name, v in variants.items()}
            medians = {k.split(" ", 1)[1]: v for k, v in time_round_robin(calls, rounds[batch]).items()}
            result["ms_per_person"][f"batch{batch}"] = {k: round(v, 2) for k, v in medians.items()}
            result["ratio_to_plain"][f"batch{batch}"] = {k: round(v / medians["plain"], 3) for k, v in medians.items()}
    return result


def _int8_methods_section(model: torch.nn.Module, crops: np.ndarray, batches: list[int],
                          rounds: dict[int, int], workdir: Path) -> dict[str, Any]:
    """Single pass (onnxruntime): fp32 vs each int8 method, speed and accuracy, to choose the default method;
    and the default method on a graph with the Linear patch embedding (the export before `prepare_for_onnx`)."""
    fp32_path = workdir / "methods_fp32.onnx"
    export_onnx(prepare_for_onnx(model), fp32_path, cycles=1, check=False)
    linear_path = workdir / "methods_fp32_linear_embedding.onnx"
    export_onnx(model, linear_path, cycles=1, check=False)
    threads = torch.get_num_threads()
    graphs = {"fp32": OnnxPoseModel(fp32_path, threads=threads)}
    accuracy = {}
    sources = {method: fp32_path for method in QUANT_METHODS}
    sources[f"{DEFAULT_METHOD}, Linear patch embedding"] = linear_path
    for name, source in sources.items():
        method = name.split(",")[0]
        report = quantize_int8(source, workdir / f"methods_{name.replace(', ', '_').replace(' ', '_')}.onnx",
                               method=method)
        graphs[name] = OnnxPoseModel(report.path, threads=threads)
        accuracy[name] = {k: getattr(report, k) for k in (
            "max_abs_diff", "heatmap_peak", "mean_keypoint_shift_px", "max_keypoint_shift_px", "keypoints_within_4px")}
        accuracy[name]["check_inputs"] = report.check_inputs
    speed: dict[str, dict[str, float]] = {}
    cpu_speed: dict[str, dict[str, float]] = {}
    for batch in batches:
        images = _batch_of(crops, batch)
        calls = {f"onnxruntime {name}": (lambda g=g, x=images: g(x), batch) for name, g in graphs.items()}
        cpu_ms: dict[str, float] = {}
        medians = time_round_robin(calls, rounds[batch], cpu_ms=cpu_ms)
        speed[f"batch{batch}"] = {k.split(" ", 1)[1]: round(v, 2) for k, v in medians.items()}
        cpu_speed[f"batch{batch}"] = {k.split(" ", 1)[1]: round(v, 2) for k, v in cpu_ms.items()}
    return {"ms_per_person": speed, "cpu_ms_per_person": cpu_speed, "accuracy": accuracy, "default": DEFAULT_METHOD}


def _stages_section(model: torch.nn.Module, crops: np.ndarray, batches: list[int],
                    rounds: dict[int, int]) -> dict[str, Any]:
    """Where the time goes: stem, patch embedding (+ position), one cycle of the shared blocks, the heatmap
    head and DARK decoding, each timed alone, for torch eager and fast (`prepare_for_cpu`): process CPU
    ms/person (all threads), which shows the split far more steadily than wall-clock on a busy machine."""
    from sdpose_core.heatmaps import heatmap_peaks

    fast = prepare_for_cpu(model)
    k = int(model.config.num_keypoints)
    result: dict[str, Any] = {"ms_per_person": {}, "stem_share_of_single_pass": {}}
    with torch.inference_mode():
        for batch in batches:
            images = torch.from_numpy(_batch_of(crops, batch))
            calls: dict[str, Call] = {}
            for name, net in (("eager", model), ("fast", fast)):
                features = net.stem(images)
                tokens = net.embed(images)
                padded_pos = net._keypoint_padded_pos()
                heatmaps = net.heatmap_head(tokens[:, :k]).float().numpy()
                calls[f"torch {name}|stem"] = (lambda n=net, x=images: n.stem(x), batch)
                calls[f"torch {name}|embed"] = (
                    lambda n=net, f=features: n.patch_embed(f) + n.pos_embedding, batch)
                calls[f"torch {name}|cycle"] = (lambda n=net, t=tokens, p=padded_pos: n.run_cycle(t, p), batch)
                calls[f"torch {name}|head"] = (lambda n=net, t=tokens: n.heatmap_head(t[:, :k]), batch)
                calls[f"torch {name}|decode"] = (lambda h=heatmaps: heatmap_peaks(h, "dark"), batch)
            medians: dict[str, float] = {}
            time_round_robin(calls, rounds[batch], cpu_ms=medians)
            for name in ("eager", "fast"):
                row = {stage: round(medians[f"torch {name}|{stage}"], 2)
                       for stage in ("stem", "embed", "cycle", "head", "decode")}
                key = f"torch {name} batch{batch}"
                result["ms_per_person"][key] = row
                single = row["stem"] + row["embed"] + row["cycle"] + row["head"]
                result["stem_share_of_single_pass"][key] = round((row["stem"] + row["embed"]) / single, 3)
    return result


def run_benchmark(json_out: str | os.PathLike | None = None, quick: bool = False, threads: int | None = None,
                  model_name: str = "sdpose-t", weights: str | None = None, int8_method: str = DEFAULT_METHOD,
                  rounds: int | None = None, verbose: bool = True,
                  image_size: tuple[int, int] | None = None,
                  tinypose_folder: str | os.PathLike | None = None) -> dict[str, Any]:
    """Measure everything in one run and return (and optionally write as JSON) the results.

    Models: `weights`, else SDPose-T at `image_size`, else the embedded default's configuration and the
    paper's 256x192 (see `benchmark_models`). `result["models"][label]` holds each one's table, stage
    profile and goal ratios; `result["sdpose"]` / `result["ratios"]` repeat the first (primary) model's.
    `quick=True` uses a tiny model config, batches 1 and 2 and two rounds: for tests of the plumbing only.
    PP-TinyPose is timed at its two input sizes when the ncnn package and its files (`tinypose_folder`, else
    <teachers>/pp_tinypose) are there; `result["auto_backend"]` is what backend="auto" picks for the primary
    model, measured in this run.
    """
    threads = int(threads or os.cpu_count() or 1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    batches = [1, 2] if quick else [1, 8]
    base_rounds = rounds or (2 if quick else 9)
    per_batch = {b: base_rounds if b == 1 else max(2, base_rounds // 2) for b in batches}
    notes: list[str] = []
    try:
        models = benchmark_models(quick, weights, image_size, model_name)
        cycles = sorted({1, 2, 3, *(int(m.config.cycles) for m, _ in models.values())})
        if threads > 1 and not os.environ.get("OMP_WAIT_POLICY") and os.getloadavg()[0] > (os.cpu_count() or 1):
            notes.append("the machine is busier than its cores and OMP_WAIT_POLICY is unset: torch's OpenMP threads "
                         "busy-wait for each other and torch timings suffer most; "
                         "rerun with OMP_WAIT_POLICY=PASSIVE to see torch without that")
        image, box, image_source = _real_image_and_box()
        if image is None:
            image, box = _synthetic_image()
            notes.append(f"no real image ({image_source}): the detector and MediaPipe ran on a synthetic image")
            image_source = "synthetic 640x480 noise image"
        primary = next(iter(models))
        result: dict[str, Any] = {
            "environment": {
                "cpu": cpu_summary(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
                "onnxruntime": __import__("onnxruntime").__version__, "python": platform.python_version(),
                "load_average_before": [round(v, 2) for v in os.getloadavg()],
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            },
            "settings": {"models": list(models), "primary_model": primary, "cycles": cycles, "batches": batches,
                         "rounds": per_batch, "int8_method": int8_method, "image": image_source, "quick": quick,
                         "crops": "real person crops of the shared COCO sets"},
            "models": {},
            "notes": notes,
        }
        result["detector"] = detector_section(image, per_batch[1])
        result["mediapipe"] = mediapipe_section(image, box, per_batch[1])
        result["tinypose"] = tinypose_section(per_batch[1], tinypose_folder)
        mediapipe_ms = result["mediapipe"].get("ms_per_person")
        with tempfile.TemporaryDirectory(prefix="sdpose_bench_") as tmp:
            for index, (label, (model, source)) in enumerate(models.items()):
                crops, crop_source = load_real_crops(model.config.image_size, limit=8)
                if crop_source is None:
                    crops = np.random.default_rng(0).standard_normal((8, 3, *model.config.image_size))
                    crops = crops.astype(np.float32)
                    result["settings"]["crops"] = "synthetic random crops"
                    notes.append(f"shared data not found under {data_root()}: synthetic inputs used")
                workdir = Path(tmp) / f"model{index}"
                workdir.mkdir()
                sdpose = _sdpose_section(model, crops, cycles, batches, per_batch, int8_method, workdir)
                result["models"][label] = {
                    "model_config": model.config.to_dict(), "weights": source, "sdpose": sdpose,
                    "stages": _stages_section(model, crops, batches, per_batch),
                    "ratios": goal_ratios(sdpose, cycles, mediapipe_ms, model.config.image_size,
                                          result["tinypose"].get("ms_per_person")),
                }
                if index == 0:
                    result["torch_speedups"] = _speedups_section(model, crops, batches, per_batch)
                    result["int8_methods"] = _int8_methods_section(model, crops, batches, per_batch, workdir)
                    result["auto_backend"] = auto_backend_section(model, threads, workdir)
        result["sdpose"] = result["models"][primary]["sdpose"]
        result["ratios"] = result["models"][primary]["ratios"]
        result["environment"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    finally:
        torch.set_num_threads(previous_threads)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    if verbose:
        print(format_report(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--weights", default=None, help="model folder / hf:// spec (default: random init)")
    parser.add_argument("--int8-method", default=DEFAULT_METHOD, choices=QUANT_METHODS)
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds at batch 1 (half at batch 8)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few rounds: checks the plumbing")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                        help="time SDPose-T at this input only (heatmaps H/4 x W/4); default: the embedded "
                             "default's configuration and the paper's 256x192")
    parser.add_argument("--tinypose", metavar="DIR", help="folder with the PP-TinyPose ncnn files (default: "
                        "$SDPOSE_TEACHERS/pp_tinypose, else ../shared/teachers/pp_tinypose)")
    args = parser.parse_args(argv)
    run_benchmark(args.json_out, quick=args.quick, threads=args.threads, weights=args.weights,
                  int8_method=args.int8_method, rounds=args.rounds,
                  image_size=tuple(args.image_size) if args.image_size else None, tinypose_folder=args.tinypose)


if __name__ == "__main__":
    main()
