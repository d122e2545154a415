"""`sdpose predict`, `sdpose export` and `sdpose benchmark`: running, exporting and timing a model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sdpose_core.inference.predictor import BACKENDS, DEFAULT_DYNAMIC_TOLERANCE, DETECTORS

WEIGHTS_HELP = (
    "weights folder, official .pth, a run's last.pt, hf://org/repo[/subdir] or .onnx (with --backend onnx); "
    "default: $SDPOSE_WEIGHTS, the embedded default, else UNTRAINED random weights (said loudly)"
)


def add_inference_commands(sub: Any) -> None:
    p = sub.add_parser("predict", help="poses on images, videos or folders: drawn skeletons + COCO-results JSON")
    p.add_argument("inputs", nargs="+", metavar="IMAGE|VIDEO|DIR")
    p.add_argument("--out", required=True, help="output folder (drawn images / annotated videos, JSON)")
    p.add_argument("--model", help="variant name; omit to use what --weights contain (default sdpose-t)")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="auto (default, or $SDPOSE_BACKEND): the fastest backend whose heatmaps match fp32 torch on "
                        "this machine, chosen once and cached in ~/.cache/sdpose ($SDPOSE_CACHE_DIR); torch, "
                        "torch-bf16 (CPUs with native bf16 only), onnx (--weights is an .onnx file), onnx-fp32, "
                        "onnx-int8 (exported from the weights); every result's timing line names what ran")
    p.add_argument("--detector", choices=DETECTORS, default="best",
                   help="person detector: best (default: RTMDet-nano, else YOLOX-Nano, else SSDLite, from "
                        "$SDPOSE_DETECTORS or ../shared/detectors), a named one, or whole-image")
    p.add_argument("--cycles", type=int, help="cycles to run (default: the model's training cycles)")
    p.add_argument("--flip", action="store_true", help="flip test (average with the mirrored crop)")
    p.add_argument("--dynamic", action="store_true", help="stop each person once two cycles agree")
    p.add_argument("--dynamic-tolerance", type=float, default=DEFAULT_DYNAMIC_TOLERANCE,
                   help="largest keypoint move (heatmap px) between cycles that counts as agreement")
    p.add_argument("--max-persons", type=int, default=20)
    p.add_argument("--json", action="store_true", help="also write per-image / per-frame JSON")
    p.add_argument("--ann", metavar="GT.json",
                   help="COCO-format annotations of the images: coco_results.json takes their image ids (matched "
                        "by file name), so `sdpose eval-preds --ann GT.json` can score it; implies --json")
    p.add_argument("--smooth", action="store_true", help="One-Euro temporal smoothing on videos")
    p.add_argument("--stride", type=int, default=1, help="every N-th video frame")
    p.add_argument("--max-frames", type=int, help="at most this many frames per video")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export to ONNX (single pass by default), optionally int8")
    p.add_argument("--out", required=True, help="output .onnx path")
    p.add_argument("--model", help="variant name when --weights is not given")
    p.add_argument("--weights", help=WEIGHTS_HELP)
    p.add_argument("--cycles", type=int, default=1, help="cycles in the graph (outputs heatmaps_cycle1..k)")
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--int8", nargs="?", const="hybrid", choices=("hybrid", "dynamic", "static"),
                   help="also write an int8 model (default method: hybrid)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("benchmark", help="ms per person / image on this machine, in one run")
    p.add_argument("--json", dest="json_out", help="also write the results here")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--weights", help="model folder / hf:// spec (default: random init)")
    p.add_argument("--rounds", type=int, help="timed rounds at batch 1 (half at batch 8)")
    p.add_argument("--quick", action="store_true", help="tiny model, few rounds: checks the plumbing")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="time SDPose-T at this input only (heatmaps H/4 x W/4); default: the embedded default's "
                        "configuration and the paper's 256x192")
    p.add_argument("--tinypose", metavar="DIR",
                   help="folder with the PP-TinyPose ncnn files (default: $SDPOSE_TEACHERS/pp_tinypose, else "
                        "../shared/teachers/pp_tinypose); timed when it and the ncnn package are there")
    p.set_defaults(func=cmd_benchmark)


def cmd_predict(args: argparse.Namespace) -> int:
    from sdpose_core.inference.media import predict_media
    from sdpose_core.inference.predictor import Predictor

    predictor = Predictor(model=args.model, weights=args.weights, device=args.device, backend=args.backend,
                          detector=args.detector, max_persons=args.max_persons)
    if predictor.backend == "auto" and predictor.select_backend(
            log=lambda text: print(text, file=sys.stderr, flush=True)) is not None:
        print(predictor.backend_status(), file=sys.stderr, flush=True)
    if not predictor.weights_info.trained:
        print(f"WARNING: {predictor.weights_info.description}", file=sys.stderr, flush=True)
    report = predict_media(predictor, args.inputs, args.out, cycles=args.cycles, json_output=args.json or bool(args.ann),
                           smooth=args.smooth, flip=args.flip, stride=args.stride, max_frames=args.max_frames,
                           progress=not args.no_progress, dynamic=args.dynamic,
                           dynamic_tolerance=args.dynamic_tolerance, annotations=args.ann)
    for path in report.outputs:
        print(path)
    for entry in report.images:
        timings = entry["timings_ms"]
        print(f"timing: {Path(entry['file']).name}: pose {timings['pose_ms']:.0f} ms, total {timings['total_ms']:.0f} ms; "
              f"{entry['backend']}", file=sys.stderr)
    for entry in report.videos:
        print(f"timing: {Path(entry['file']).name}: median {entry['median_ms_per_frame']} ms/frame; "
              f"{entry['backend']}", file=sys.stderr)
    for entry in [*report.images, *report.videos]:
        for note in entry.get("notes", []):
            print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sdpose_core.deploy.export import run_export

    run_export(args.out, weights=args.weights, model=args.model, cycles=args.cycles, opset=args.opset,
               int8=args.int8)
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from sdpose_core.benchmark.speed import run_benchmark

    run_benchmark(args.json_out, quick=args.quick, threads=args.threads, weights=args.weights, rounds=args.rounds,
                  image_size=tuple(args.image_size) if args.image_size else None, tinypose_folder=args.tinypose)
    return 0
