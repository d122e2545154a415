"""Keypoint AP of int8 vs fp32 ONNX vs torch on the shared COCO sets (single pass unless --cycles).

Exports the model to ONNX, quantizes it (`sdpose_core.deploy.quantize.quantize_int8`, calibrated on
coco_mini_train crops for the static parts), and scores torch, onnxruntime fp32 and onnxruntime int8 with
the same decoding and COCOeval on: mmpose_coco with GT boxes, mmpose_coco with the shared detections
(OKS-NMS), and coco_mini_train with GT boxes (the calibration images: reported, but not a clean test).

The header says which weights were used; with UNTRAINED weights the AP columns are meaningless (only the
int8 - fp32 differences say something, and little): pass --weights or set SDPOSE_WEIGHTS.
Run: `python scripts/measure_int8_ap.py [--weights W] [--method hybrid|dynamic|static] [--cycles 1] [--json out]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from sdpose_core.data import TopDownDataset
from sdpose_core.deploy.cpu_speedups import prepare_for_onnx
from sdpose_core.deploy.export import export_onnx
from sdpose_core.deploy.onnx_runtime import OnnxPoseModel
from sdpose_core.deploy.quantize import DEFAULT_METHOD, QUANT_METHODS, quantize_int8
from sdpose_core.evaluation import evaluate_predictions
from sdpose_core.evaluation.loop import predict_dataset
from sdpose_core.paths import data_root
from sdpose_core.weights import load_model

METRICS = ("AP", "AP50", "AP75", "AR")


def datasets(image_size: tuple[int, int], heatmap_size: tuple[int, int]) -> dict[str, TopDownDataset]:
    root = data_root() / "coco"
    sets = {}
    for name, split, boxes in (("mmpose_coco GT boxes", "mmpose_coco", "gt"),
                               ("mmpose_coco detections", "mmpose_coco", "person_detections.json"),
                               ("coco_mini_train GT boxes (calibration images)", "coco_mini_train", "gt")):
        folder = root / split
        box_source = boxes if boxes == "gt" else str(folder / boxes)
        if (folder / "person_keypoints.json").is_file() and (boxes == "gt" or (folder / boxes).is_file()):
            sets[name] = TopDownDataset(folder / "person_keypoints.json", folder / "images", train=False,
                                        image_size=image_size, heatmap_size=heatmap_size, boxes=box_source)
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", default=None, help="weights folder / .pth / hf:// (default: SDPOSE_WEIGHTS, "
                                                        "embedded default, else UNTRAINED)")
    parser.add_argument("--model", default=None, help="variant name when no weights are given")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=QUANT_METHODS)
    parser.add_argument("--cycles", type=int, default=1, help="cycle whose AP is reported (graph exports 1..cycles)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    model, info = load_model(args.weights, args.model)
    config = model.config
    print(f"weights: {info.description}")
    print(f"model: {config.name}, input {tuple(config.image_size)}, cycle {args.cycles}, int8 method {args.method}")
    sets = datasets(tuple(config.image_size), tuple(config.heatmap_size))
    if not sets:
        raise SystemExit(f"no shared COCO sets under {data_root()} (set SDPOSE_DATA)")
    table: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="sdpose_int8_ap_") as tmp:
        fp32_path = Path(tmp) / "model.onnx"
        # the graph the benchmark times: patch embedding as a strided Conv (sdpose_core.deploy.cpu_speedups)
        print(export_onnx(prepare_for_onnx(model), fp32_path, cycles=args.cycles,
                          weights_info=info.description).summary())
        report = quantize_int8(fp32_path, Path(tmp) / "model.int8.onnx", method=args.method)
        print(report.summary())
        backends = {"onnxruntime fp32": OnnxPoseModel(fp32_path, threads=args.threads),
                    "onnxruntime int8": OnnxPoseModel(report.path, threads=args.threads)}
        for name, dataset in sets.items():
            ann = str(dataset.ann_file)
            table[name] = {"torch": evaluate_predictions(ann, predict_dataset(model, dataset, cycles=args.cycles)[args.cycles])}
            for backend, graph in backends.items():
                results = predict_dataset(graph, dataset, cycles=args.cycles, batch_size=16)[args.cycles]
                table[name][backend] = evaluate_predictions(ann, results)
    print(f"\n{'set / backend':<66}" + "".join(f"{m:>8}" for m in METRICS))
    for name, rows in table.items():
        for backend, metrics in rows.items():
            print(f"{name + ' | ' + backend:<66}" + "".join(f"{metrics[m]:>8.3f}" for m in METRICS))
        delta = {m: rows["onnxruntime int8"][m] - rows["onnxruntime fp32"][m] for m in METRICS}
        print(f"{name + ' | int8 - fp32':<66}" + "".join(f"{delta[m]:>+8.3f}" for m in METRICS))
    if not info.trained:
        print("\nnote: UNTRAINED weights: these APs are meaningless; only the int8 - fp32 deltas carry (little) signal")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"weights": info.to_dict(), "method": args.method,
                                                   "cycles": args.cycles, "quantization": report.to_dict(),
                                                   "metrics": table}, indent=2))


if __name__ == "__main__":
    main()
