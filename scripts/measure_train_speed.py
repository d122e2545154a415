"""Training throughput of an SDPose variant on this machine: training variants as ratios to fp32, in one run.

    OMP_WAIT_POLICY=PASSIVE python scripts/measure_train_speed.py --sizes 128x96 --variants fp32 channels-last cycles1

One optimisation step = forward of every cycle + the SDPose loss + backward + Adam, on random inputs
(data loading excluded), batch 32. Variants: fp32 (the reference), bf16 (autocast; emulated and slow without
native bf16), channels-last (the stem's convolutions and the input in NHWC, oneDNN's preferred layout; the same
math), cycles1 (one cycle instead of the model's training cycles: what a 1-cycle warm phase would cost).
The variants are timed in interleaved rounds (A B C A B C ...) so that a noisy machine affects them alike;
each figure is the median step over all rounds after one warm-up step per model. The CPU is printed first.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sdpose_core.losses import SDPoseLoss
from sdpose_core.models import build_model
from sdpose_core.precision import cpu_summary

VARIANTS = {
    "fp32": {},
    "bf16": {"bf16": True},
    "channels-last": {"channels_last": True},
    "cycles1": {"cycles": 1},
}


class Timed:
    """One variant's model, optimiser and inputs; `step()` runs one optimisation step and returns its seconds."""

    def __init__(self, model_name: str, size: tuple[int, int], cycles: int, batch: int, bf16: bool = False,
                 channels_last: bool = False) -> None:
        torch.manual_seed(0)
        height, width = size
        self.model = build_model(model_name, image_size=size, heatmap_size=(height // 4, width // 4),
                                 cycles=cycles).train()
        self.images = torch.randn(batch, 3, height, width)
        if channels_last:
            self.model.stem.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.bf16 = bf16
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.loss_fn = SDPoseLoss()
        self.target = torch.rand(batch, self.model.config.num_keypoints, height // 4, width // 4)
        self.weight = torch.ones(batch, self.model.config.num_keypoints, 1)
        self.times: list[float] = []
        self.step()  # allocation and kernel selection
        self.times.clear()

    def step(self) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.loss_fn(self.model(self.images), self.target, self.weight)["loss"]
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.times.append(time.perf_counter() - start)
        return self.times[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sdpose-t")
    parser.add_argument("--sizes", nargs="+", default=["128x96", "192x144", "256x192"])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one step per variant each)")
    parser.add_argument("--variants", nargs="+", default=["fp32", "bf16"], choices=list(VARIANTS))
    args = parser.parse_args()
    variants = ["fp32", *[v for v in args.variants if v != "fp32"]]
    print(f"CPU: {cpu_summary()}; {torch.get_num_threads()} threads")
    print(f"{args.model}, {args.cycles} training cycles, batch {args.batch}, {args.rounds} interleaved rounds")
    print("input    " + "  ".join(f"{v:>15s}" for v in variants) + "   (samples/s; ratio to fp32)")
    for text in args.sizes:
        size = tuple(int(v) for v in text.lower().split("x"))
        timed = {}
        for name in variants:
            options = dict(VARIANTS[name])
            cycles = options.pop("cycles", args.cycles)
            timed[name] = Timed(args.model, size, cycles, args.batch, **options)
        for _ in range(args.rounds):
            for name in variants:
                timed[name].step()
        rates = {name: args.batch / statistics.median(t.times) for name, t in timed.items()}
        cells = [f"{rates[n]:6.1f} ({rates[n] / rates['fp32']:4.2f}x)" for n in variants]
        print(f"{text:8s} " + "  ".join(f"{c:>15s}" for c in cells))


if __name__ == "__main__":
    main()
