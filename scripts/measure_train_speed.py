"""Training throughput of an SDPose variant on this machine: fp32 vs bf16 autocast, per input size.

    OMP_WAIT_POLICY=PASSIVE python scripts/measure_train_speed.py --sizes 128x96 256x192

One optimisation step = forward of every cycle + the SDPose loss + backward + Adam, on random inputs
(data loading excluded), batch 32, median of `--steps` timed steps after one warm-up step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sdpose_core.losses import SDPoseLoss
from sdpose_core.models import build_model


def samples_per_second(model_name: str, size: tuple[int, int], cycles: int, bf16: bool, batch: int,
                       steps: int) -> float:
    torch.manual_seed(0)
    height, width = size
    model = build_model(model_name, image_size=size, heatmap_size=(height // 4, width // 4), cycles=cycles).train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = SDPoseLoss()
    images = torch.randn(batch, 3, height, width)
    target = torch.rand(batch, model.config.num_keypoints, height // 4, width // 4)
    weight = torch.ones(batch, model.config.num_keypoints, 1)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(images), target, weight)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:  # the first step pays for allocation and kernel selection
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sdpose-t")
    parser.add_argument("--sizes", nargs="+", default=["128x96", "192x144", "256x192"])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.model}, {args.cycles} cycles, batch {args.batch}, {torch.get_num_threads()} threads")
    print("input    fp32 samples/s  bf16 samples/s  bf16/fp32")
    for text in args.sizes:
        size = tuple(int(v) for v in text.lower().split("x"))
        fp32 = samples_per_second(args.model, size, args.cycles, False, args.batch, args.steps)
        bf16 = samples_per_second(args.model, size, args.cycles, True, args.batch, args.steps)
        print(f"{text:8s} {fp32:14.1f}  {bf16:14.1f}  {bf16 / fp32:9.2f}")


if __name__ == "__main__":
    main()
