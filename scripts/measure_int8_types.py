"""int8 integer types on this CPU: u8 x s8 (saturates without VNNI / AMX) against u8 x u8, next to fp32.

    python scripts/measure_int8_types.py            # embedded default, hybrid int8, 2 threads

Each graph is made by `sdpose_core.deploy.quantize.quantize_int8(..., types=...)` and compared with the fp32 graph on
the held-out shared mmpose_coco crops (max heatmap difference, share of keypoints within 4 crop px); speed is
the median ms/person of round-robin calls at batch 1 and 8. The CPU class is printed first: the answer
differs between CPUs with and without VNNI, which is why `default_int8_types` chooses per CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdpose_core.deploy.crops import load_real_crops
from sdpose_core.deploy.export import export_onnx
from sdpose_core.deploy.onnx_runtime import OnnxPoseModel  # noqa: E402
from sdpose_core.deploy.quantize import DEFAULT_METHOD, INT8_TYPES, default_int8_types, quantize_int8  # noqa: E402
from sdpose_core.inference.predictor import Predictor  # noqa: E402
from sdpose_core.precision import cpu_summary  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="weights spec (default: the embedded default)")
    parser.add_argument("--method", default=DEFAULT_METHOD)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=25)
    args = parser.parse_args()
    print(f"CPU: {cpu_summary()}; default types here: {default_int8_types()}; {args.threads} threads")
    model = Predictor(weights=args.weights, backend="torch").model
    with tempfile.TemporaryDirectory(prefix="sdpose_int8_types_") as tmp:
        source = Path(tmp) / "model.onnx"
        export_onnx(model, source, cycles=1, weights_info="measure_int8_types")
        graphs = {"fp32": OnnxPoseModel(source, threads=args.threads)}
        for types in INT8_TYPES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the u8s8 warning on CPUs without VNNI is the point here
                report = quantize_int8(source, Path(tmp) / f"{types}.onnx", method=args.method, types=types)
                graphs[types] = OnnxPoseModel(report.path, threads=args.threads)
            print(f"{args.method} {types}: max heatmap diff {report.max_abs_diff:.4f} (peak {report.heatmap_peak:.2f}), "
                  f"{100 * report.keypoints_within_4px:.1f}% of keypoints within 4 px, mean shift "
                  f"{report.mean_keypoint_shift_px:.2f} px ({report.check_inputs})")
        crops, _ = load_real_crops(graphs["fp32"].input_size, limit=8)
        times: dict[str, dict[int, list[float]]] = {name: {1: [], 8: []} for name in graphs}
        for _ in range(args.rounds):
            for name, graph in graphs.items():
                for batch in (1, 8):
                    start = time.perf_counter()
                    graph(crops[:batch])
                    times[name][batch].append((time.perf_counter() - start) * 1e3 / batch)
        for name, by_batch in times.items():
            b1, b8 = (statistics.median(by_batch[b][3:]) for b in (1, 8))
            print(f"{name:6s} ms/person: batch 1 {b1:6.2f}, batch 8 {b8:6.2f}")


if __name__ == "__main__":
    main()
