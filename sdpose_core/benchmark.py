"""Speed benchmark on this machine: SDPose-T per person (torch eager, onnxruntime fp32 and int8) for 1, 2
and 3 cycles, the person detector, MediaPipe BlazePose, torch CPU speed-ups and the int8 methods.

    python -m sdpose_core.benchmark [--json out.json] [--threads N] [--weights DIR] [--quick]
    OMP_WAIT_POLICY=PASSIVE python -m sdpose_core.benchmark      # on a shared / busy machine (see notes)

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
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpose_core.cpu_inference import prepare_for_cpu
from sdpose_core.errors import SDPoseError
from sdpose_core.export import OnnxPoseModel, export_onnx, load_real_crops
from sdpose_core.paths import data_root
from sdpose_core.quantize import DEFAULT_METHOD, QUANT_METHODS, quantize_int8

GOALS = {"single_pass_ms_per_person": 10.0, "single_pass_vs_mediapipe": 0.5, "single_pass_vs_3_cycles": 0.45}
QUICK_MODEL = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=32, depth=2, heads=4)
BACKENDS = ("torch eager", "torch fast", "torch fast bf16", "onnxruntime fp32", "onnxruntime int8")
Call = tuple[Callable[[], Any], int]  # (function, people per call)


def time_round_robin(calls: dict[str, Call], rounds: int, warmup: int = 1, pause_s: float = 0.02) -> dict[str, float]:
    """Median milliseconds per person of each call, timed one after another in every round.

    Calls run in the dict's order; when the runtime changes (the name's part before the first space,
    e.g. "torch" / "onnxruntime") the timer pauses `pause_s` so that the threads of one runtime have gone
    idle before the other's are timed (two thread pools fighting over 2 cores distort both).
    """
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_index in range(warmup + rounds):
        runtime = None
        for name, (fn, people) in calls.items():
            if name.split(" ", 1)[0] != runtime:
                runtime = name.split(" ", 1)[0]
                time.sleep(pause_s)
            start = time.perf_counter()
            fn()
            if round_index >= warmup:
                samples[name].append((time.perf_counter() - start) * 1e3 / people)
    return {name: statistics.median(values) for name, values in samples.items()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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
    """
    fast = prepare_for_cpu(model)
    graphs: dict[str, dict[int, OnnxPoseModel]] = {"onnxruntime fp32": {}, "onnxruntime int8": {}}
    int8_reports = {}
    for c in cycles:
        fp32_path = workdir / f"sdpose_c{c}.onnx"
        export_onnx(model, fp32_path, cycles=c, check=False)
        report = quantize_int8(fp32_path, workdir / f"sdpose_c{c}.int8.onnx", method=int8_method)
        int8_reports[f"cycles{c}"] = report.to_dict()
        graphs["onnxruntime fp32"][c] = OnnxPoseModel(fp32_path, threads=torch.get_num_threads())
        graphs["onnxruntime int8"][c] = OnnxPoseModel(report.path, threads=torch.get_num_threads())
    table: dict[str, dict[str, dict[str, float]]] = {backend: {} for backend in BACKENDS}
    for batch in batches:
        images = _batch_of(crops, batch)
        tensor = torch.from_numpy(images)
        calls: dict[str, Call] = {}
        for backend, net, bf16 in (("torch eager", model, False), ("torch fast", fast, False),
                                   ("torch fast bf16", fast, True)):  # torch first, then onnxruntime
            for c in cycles:
                calls[f"{backend}|{c}"] = (lambda c=c, net=net, x=tensor, bf16=bf16: _forward(net, x, c, bf16), batch)
        for backend, by_cycles in graphs.items():
            for c in cycles:
                calls[f"{backend}|{c}"] = (lambda g=by_cycles[c], x=images: g(x), batch)
        with torch.inference_mode():
            medians = time_round_robin(calls, rounds[batch])
        for key, ms in medians.items():
            backend, c = key.split("|")
            table[backend].setdefault(f"batch{batch}", {})[f"cycles{c}"] = round(ms, 2)
    return {"ms_per_person": table, "int8": int8_reports}


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

    result: dict[str, Any] = {"ms_per_person": {}, "ratio_to_plain": {}, "max_abs_heatmap_diff": {}}
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
    """Single pass (onnxruntime): fp32 vs each int8 method, speed and accuracy, to choose the default method."""
    fp32_path = workdir / "methods_fp32.onnx"
    export_onnx(model, fp32_path, cycles=1, check=False)
    threads = torch.get_num_threads()
    graphs = {"fp32": OnnxPoseModel(fp32_path, threads=threads)}
    accuracy = {}
    for method in QUANT_METHODS:
        report = quantize_int8(fp32_path, workdir / f"methods_{method}.onnx", method=method)
        graphs[method] = OnnxPoseModel(report.path, threads=threads)
        accuracy[method] = {k: getattr(report, k) for k in (
            "max_abs_diff", "heatmap_peak", "mean_keypoint_shift_px", "max_keypoint_shift_px", "keypoints_within_4px")}
        accuracy[method]["check_inputs"] = report.check_inputs
    speed = {}
    for batch in batches:
        images = _batch_of(crops, batch)
        calls = {f"onnxruntime {name}": (lambda g=g, x=images: g(x), batch) for name, g in graphs.items()}
        medians = time_round_robin(calls, rounds[batch])
        speed[f"batch{batch}"] = {k.split(" ", 1)[1]: round(v, 2) for k, v in medians.items()}
    return {"ms_per_person": speed, "accuracy": accuracy, "default": DEFAULT_METHOD}


def _detector_section(image: np.ndarray, rounds: int) -> dict[str, Any]:
    from sdpose_core.detection import PersonDetector

    try:
        single, default = PersonDetector(tiles=0, flip=False), PersonDetector()
    except SDPoseError as exc:
        return {"error": str(exc)}
    medians = time_round_robin({"cv2 single_pass": (lambda: single.detect(image), 1),
                                "cv2 default": (lambda: default.detect(image), 1)}, rounds)
    return {"ms_per_image": {k.split(" ", 1)[1]: round(v, 2) for k, v in medians.items()},
            "passes": {"single_pass": single.passes, "default": default.passes},
            "people_found": {"single_pass": len(single.detect(image)), "default": len(default.detect(image))}}


def _mediapipe_section(image: np.ndarray, box: np.ndarray, rounds: int) -> dict[str, Any]:
    from sdpose_core.baselines import MediaPipePose

    try:
        with MediaPipePose() as pose:
            found = pose.predict(image, [box])[0].found
            medians = time_round_robin({"mediapipe": (lambda: pose.predict(image, [box]), 1)}, rounds)
    except SDPoseError as exc:
        return {"error": str(exc)}
    return {"ms_per_person": round(medians["mediapipe"], 2), "pose_found": bool(found)}


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Single pass / 3-cycle per backend and batch, single pass / MediaPipe, and the goals."""
    table = result["sdpose"]["ms_per_person"]
    last = f"cycles{max(result['settings']['cycles'])}"
    mediapipe = result["mediapipe"].get("ms_per_person")
    ratios: dict[str, Any] = {"single_vs_all_cycles": {}, "single_vs_mediapipe": {}}
    best = min((row["cycles1"], backend, batch) for backend, rows in table.items() for batch, row in rows.items())
    for backend, rows in table.items():
        for batch, row in rows.items():
            ratios["single_vs_all_cycles"][f"{backend} {batch}"] = round(row["cycles1"] / row[last], 3)
            if mediapipe:
                ratios["single_vs_mediapipe"][f"{backend} {batch}"] = round(row["cycles1"] / mediapipe, 3)
    best_cycle_ratio = min(ratios["single_vs_all_cycles"].values())
    goals = {
        "single_pass_ms_per_person": {"goal": GOALS["single_pass_ms_per_person"], "best": best[0],
                                      "where": f"{best[1]} {best[2]}",
                                      "met": best[0] <= GOALS["single_pass_ms_per_person"]},
        "single_pass_vs_3_cycles": {"goal": GOALS["single_pass_vs_3_cycles"], "best": best_cycle_ratio,
                                    "met": best_cycle_ratio <= GOALS["single_pass_vs_3_cycles"]},
    }
    if mediapipe:
        vs_mp = best[0] / mediapipe
        goals["single_pass_vs_mediapipe"] = {"goal": GOALS["single_pass_vs_mediapipe"], "best": round(vs_mp, 3),
                                             "met": vs_mp <= GOALS["single_pass_vs_mediapipe"]}
    return {**ratios, "goals": goals}


def run_benchmark(json_out: str | os.PathLike | None = None, quick: bool = False, threads: int | None = None,
                  model_name: str = "sdpose-t", weights: str | None = None, int8_method: str = DEFAULT_METHOD,
                  rounds: int | None = None, verbose: bool = True) -> dict[str, Any]:
    """Measure everything in one run and return (and optionally write as JSON) the results.

    `quick=True` uses a tiny model config, batches 1 and 2 and two rounds: for tests of the plumbing only.
    """
    from sdpose_core.checkpoint import load_pretrained
    from sdpose_core.models import build_model

    threads = int(threads or os.cpu_count() or 1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    batches = [1, 2] if quick else [1, 8]
    base_rounds = rounds or (2 if quick else 9)
    per_batch = {b: base_rounds if b == 1 else max(2, base_rounds // 2) for b in batches}
    notes: list[str] = []
    try:
        if weights:
            model, weights_used = load_pretrained(weights).eval(), str(weights)
        else:
            torch.manual_seed(0)
            model = build_model(model_name, **(QUICK_MODEL if quick else {})).eval()
            weights_used = f"random init (seed 0) {model_name}: timings are weight-independent, int8 accuracy is not"
        cycles = sorted({1, 2, 3, int(model.config.cycles)})
        crops, crop_source = load_real_crops(model.config.image_size, limit=8)
        if crop_source is None:
            crops = np.random.default_rng(0).standard_normal((8, 3, *model.config.image_size)).astype(np.float32)
            crop_source = "synthetic random crops"
            notes.append(f"shared data not found under {data_root()}: synthetic inputs used")
        if threads > 1 and not os.environ.get("OMP_WAIT_POLICY") and os.getloadavg()[0] > (os.cpu_count() or 1):
            notes.append("the machine is busier than its cores and OMP_WAIT_POLICY is unset: torch's OpenMP threads "
                         "busy-wait for each other and torch timings suffer most (measured up to 5x here); "
                         "rerun with OMP_WAIT_POLICY=PASSIVE to see torch without that")
        image, box, image_source = _real_image_and_box()
        if image is None:
            image, box = _synthetic_image()
            notes.append(f"no real image ({image_source}): the detector and MediaPipe ran on a synthetic image")
            image_source = "synthetic 640x480 noise image"
        result: dict[str, Any] = {
            "environment": {
                "cpu": _cpu_name(), "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
                "onnxruntime": __import__("onnxruntime").__version__, "python": platform.python_version(),
                "load_average_before": [round(v, 2) for v in os.getloadavg()],
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
            },
            "settings": {"model": model.config.name, "model_config": model.config.to_dict(), "weights": weights_used,
                         "cycles": cycles, "batches": batches, "rounds": per_batch, "int8_method": int8_method,
                         "crops": crop_source, "image": image_source, "quick": quick},
            "notes": notes,
        }
        with tempfile.TemporaryDirectory(prefix="sdpose_bench_") as tmp:
            result["sdpose"] = _sdpose_section(model, crops, cycles, batches, per_batch, int8_method, Path(tmp))
            result["torch_speedups"] = _speedups_section(model, crops, batches, per_batch)
            result["int8_methods"] = _int8_methods_section(model, crops, batches, per_batch, Path(tmp))
        result["detector"] = _detector_section(image, per_batch[1])
        result["mediapipe"] = _mediapipe_section(image, box, per_batch[1])
        result["ratios"] = _ratios(result)
        result["environment"]["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    finally:
        torch.set_num_threads(previous_threads)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2) + "\n")
    if verbose:
        print(format_report(result))
    return result


def format_report(result: dict[str, Any]) -> str:
    """The benchmark as plain-text tables."""
    env, settings = result["environment"], result["settings"]
    cycles = settings["cycles"]
    last = f"cycles{max(cycles)}"
    lines = [f"{env['cpu']}, {env['cores']} cores, {env['threads']} threads; torch {env['torch']}, "
             f"onnxruntime {env['onnxruntime']}; OMP_WAIT_POLICY={env.get('OMP_WAIT_POLICY')}; "
             f"load average before {env['load_average_before']} "
             f"after {env.get('load_average_after')}",
             f"model {settings['model']} ({settings['weights']}); inputs: {settings['crops']}; "
             f"medians of {settings['rounds']} rounds (by batch), round-robin", ""]
    header = f"{'ms/person':<30}" + "".join(f"{'cycles ' + str(c):>11}" for c in cycles) + f"{'1/' + str(max(cycles)):>8}"
    lines.append(header)
    for batch in (f"batch{b}" for b in settings["batches"]):
        for backend, rows in result["sdpose"]["ms_per_person"].items():
            row = rows[batch]
            lines.append(f"{backend + ' ' + batch:<30}" + "".join(f"{row[f'cycles{c}']:>11.1f}" for c in cycles)
                         + f"{row['cycles1'] / row[last]:>8.2f}")
    detector, mediapipe = result["detector"], result["mediapipe"]
    lines.append("")
    if "ms_per_image" in detector:
        ms, passes = detector["ms_per_image"], detector["passes"]
        lines.append(f"person detector ms/image: single pass (tiles=0, flip=False) {ms['single_pass']:.1f}; "
                     f"default ({passes['default']} passes) {ms['default']:.1f}   [{settings['image']}]")
    else:
        lines.append(f"person detector: {detector['error']}")
    lines.append(f"MediaPipe BlazePose ms/person: {mediapipe['ms_per_person']:.1f}" if "ms_per_person" in mediapipe
                 else f"MediaPipe: {mediapipe['error']}")
    lines += ["", "goals (2-core CPU):"]
    for name, goal in result["ratios"]["goals"].items():
        where = f" ({goal['where']})" if "where" in goal else ""
        lines.append(f"  {name:<28} goal <= {goal['goal']:<5} best {goal['best']:<8}{where} "
                     f"{'MET' if goal['met'] else 'not met'}")
    speedups = result["torch_speedups"]
    lines += ["", "torch single pass speed-ups (time / plain eager; < 1 is faster) and max |heatmap diff|:"]
    for name, diff in speedups["max_abs_heatmap_diff"].items():
        ratios = "  ".join(f"{b} {speedups['ratio_to_plain'][b][name]:.2f}" for b in speedups["ratio_to_plain"])
        lines.append(f"  {name:<24} {ratios}   diff {diff:.1e}")
    methods = result["int8_methods"]
    lines += ["", f"int8 methods, single pass ms/person and accuracy vs fp32 (default: {methods['default']}):"]
    for name in methods["ms_per_person"][f"batch{settings['batches'][0]}"]:
        speed = "  ".join(f"{b} {row[name]:.1f}" for b, row in methods["ms_per_person"].items())
        acc = methods["accuracy"].get(name)
        extra = (f"   max diff {acc['max_abs_diff']:.4f} / peak {acc['heatmap_peak']:.2f}, shift mean "
                 f"{acc['mean_keypoint_shift_px']:.2f} px, {100 * acc['keypoints_within_4px']:.0f}% <= 4 px") if acc else ""
        lines.append(f"  {name:<8} {speed}{extra}")
    return "\n".join(lines + [f"note: {note}" for note in result["notes"]])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    parser.add_argument("--weights", default=None, help="model folder / hf:// spec (default: random init)")
    parser.add_argument("--int8-method", default=DEFAULT_METHOD, choices=QUANT_METHODS)
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds at batch 1 (half at batch 8)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few rounds: checks the plumbing")
    args = parser.parse_args(argv)
    run_benchmark(args.json_out, quick=args.quick, threads=args.threads, weights=args.weights,
                  int8_method=args.int8_method, rounds=args.rounds)


if __name__ == "__main__":
    main()
