"""Eager CPU timing of a model forward: `python -m sdpose_core.models.benchmark [name] [--threads N]`.

Compares torch's fused scaled_dot_product_attention with the explicit softmax(QK^T)V path in the same
run (alternating, median of repeats), for batch 1 and 8 and for one pass vs all cycles.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sdpose_core.models.registry import build_model
from sdpose_core.models.sdpose import SDPose


def time_forward(model: SDPose, batch: int, cycles: int, fused: bool, repeats: int) -> float:
    """Median milliseconds per image of `model(images, cycles)` in inference mode."""
    model.fused_attention = fused
    images = torch.randn(batch, 3, *model.config.image_size)
    timings = []
    with torch.inference_mode():
        model(images, cycles=cycles)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(images, cycles=cycles)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings) / batch * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", nargs="?", default="sdpose-t")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = build_model(args.name).eval()
    print(f"{args.name}, {args.threads} threads, torch {torch.__version__}, ms/image (median)")
    for batch in (1, 8):
        for cycles in sorted({1, model.config.cycles}):
            explicit = time_forward(model, batch, cycles, False, args.repeats)
            fused = time_forward(model, batch, cycles, True, args.repeats)
            print(f"batch {batch} cycles {cycles}: explicit {explicit:.1f}  sdpa {fused:.1f}")


if __name__ == "__main__":
    main()
