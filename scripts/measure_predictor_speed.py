"""Predictor speed per person, end to end (crop, forward, decode), with and without its CPU speed-ups.

Times `Predictor.predict` on a shared COCO image with its ground-truth boxes (1 person and 8 people per
call), single pass and all cycles, for: torch as loaded (`cpu_speedups=False`), torch with the speed-ups
(BN folded, channels-last stem: the default), and onnxruntime fp32 / int8 graphs of the same model.
Round-robin medians, so the ratios hold on a busy machine. Weights: --weights, else the embedded
default's configuration (random init until it is bundled; timings do not depend on the weights).
Run: `OMP_WAIT_POLICY=PASSIVE python scripts/measure_predictor_speed.py [--weights W] [--rounds 9]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from sdpose_core.benchmark.models import embedded_default_model
from sdpose_core.benchmark.speed import time_round_robin
from sdpose_core.deploy.cpu_speedups import prepare_for_onnx
from sdpose_core.deploy.export import export_onnx
from sdpose_core.deploy.quantize import quantize_int8
from sdpose_core.inference.predictor import Predictor, load_image
from sdpose_core.paths import data_root

IMAGE = ("coco/coco_mini_train", "000000370162.jpg")  # 11 annotated people


def gt_boxes(split: str, file_name: str) -> np.ndarray:
    data = json.loads((data_root() / split / "person_keypoints.json").read_text())
    image_id = next(i["id"] for i in data["images"] if i["file_name"] == file_name)
    return np.array([a["bbox"] for a in data["annotations"] if a["image_id"] == image_id and not a["iscrowd"]
                     and a["num_keypoints"] > 0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="weights folder (default: the embedded default's configuration)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch / onnxruntime threads (default: all)")
    args = parser.parse_args()
    if args.weights:
        from sdpose_core.weights import load_pretrained

        model, source = load_pretrained(args.weights).eval(), args.weights
    else:
        model, source = embedded_default_model()
    cycles = int(model.config.cycles)
    image, boxes = load_image(data_root() / IMAGE[0] / "images" / IMAGE[1]), gt_boxes(*IMAGE)
    with tempfile.TemporaryDirectory(prefix="sdpose_predictor_speed_") as tmp:
        graphs: dict[str, dict[int, Path]] = {"onnxruntime fp32": {}, "onnxruntime int8": {}}
        for count in (1, cycles):  # an ONNX graph computes all its cycles: one graph per cycle count
            fp32 = export_onnx(prepare_for_onnx(model), Path(tmp) / f"model{count}.onnx", cycles=count,
                               check=False).path
            graphs["onnxruntime fp32"][count] = fp32
            graphs["onnxruntime int8"][count] = quantize_int8(fp32, Path(tmp) / f"model{count}.int8.onnx").path
        predictors = {
            "torch as loaded": {c: Predictor(model=model, detector=None, cpu_speedups=False, num_threads=args.threads,
                                             backend="torch") for c in (1, cycles)},
            "torch speed-ups": {c: Predictor(model=model, detector=None, num_threads=args.threads, backend="torch")
                                for c in (1, cycles)},
            **{name: {c: Predictor(weights=path, backend="onnx", detector=None, num_threads=args.threads)
                      for c, path in paths.items()} for name, paths in graphs.items()},
        }
        height, width = model.config.image_size
        print(f"{model.config.name} {height}x{width}, {cycles} cycles ({source}); {IMAGE[1]} with GT boxes; "
              f"torch threads {torch.get_num_threads()}; medians of {args.rounds} round-robin rounds")
        print(f"{'ms/person (whole predict call)':<34}{'batch':>6}{'1 cycle':>10}{f'{cycles} cycles':>11}"
              f"{'1/' + str(cycles):>7}{'vs as loaded':>14}")
        for batch in (1, 8):
            chosen = boxes[:batch]
            calls = {f"{name}|{c}": (lambda p=p, c=c, b=chosen: p.predict(image, boxes=b, cycles=c), batch)
                     for name, by_cycles in predictors.items() for c, p in by_cycles.items()}
            with torch.inference_mode():
                medians = time_round_robin(calls, args.rounds)
            for name in predictors:
                one, full = medians[f"{name}|1"], medians[f"{name}|{cycles}"]
                print(f"{name:<34}{batch:>6}{one:>10.1f}{full:>11.1f}{one / full:>7.2f}"
                      f"{one / medians['torch as loaded|1']:>14.2f}")


if __name__ == "__main__":
    main()
