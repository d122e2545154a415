"""What the opt-in training targets cost on this machine: teacher soft targets, the sigma schedule, the losses.

    OMP_WAIT_POLICY=PASSIVE python scripts/measure_target_costs.py                 # loader + per-batch costs
    OMP_WAIT_POLICY=PASSIVE python scripts/measure_target_costs.py --train-steps 8  # + end-to-end training

1. DataLoader samples/s (augmented crops, `--workers` processes, batch `--batch`) without a teacher and with
   each PP-TinyPose teacher computing its heatmaps in the workers (`--teacher-targets`);
2. the main-process re-encoding of a batch's Gaussian targets (sigma schedule), ms per batch;
3. forward + backward of each heatmap loss on one cycle's heatmaps, ms per batch;
4. with `--train-steps N`: samples/s of real SDPose-T training steps (data loading included, the trainer's
   own samples_per_s over steps 2..N) without and with the 128x96 teacher.
Data: `--ann` / `--images` (default the shared coco_mini_train), student input `--size` (default 128x96).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from sdpose_core.data import TopDownDataset, collate_topdown
from sdpose_core.losses import HEATMAP_LOSSES, make_heatmap_loss
from sdpose_core.paths import data_root
from sdpose_core.precision import cpu_summary
from sdpose_core.train.targets import BatchTargets
from sdpose_core.train.teacher_targets import TEACHER_TARGETS, attach_teacher_targets


def loader_samples_per_s(dataset: TopDownDataset, batch: int, workers: int, samples: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_topdown,
                        generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
    seen, start, first = 0, None, True
    while seen < samples:
        for item in loader:
            if first:  # the first batch pays for worker start-up and the teachers' model loading
                first, start = False, time.perf_counter()
                continue
            seen += len(item["image"])
            if seen >= samples:
                break
    return seen / (time.perf_counter() - start)


def median_ms(fn, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def train_samples_per_s(ann: str, images: str, size: tuple[int, int], batch: int, workers: int, steps: int,
                        teacher: str | None) -> float:
    from sdpose_core.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(out=out, train_ann=ann, train_images=images, image_size=size, batch_size=batch,
                             workers=workers, max_steps=steps, log_every=1, progress=False, save_every=10**6,
                             teacher_targets=teacher)
        train(config)
        records = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    rates = [r["samples_per_s"] for r in records if r["kind"] == "iter"][1:]  # step 1: start-up
    return statistics.median(rates)


def main() -> None:
    coco = data_root() / "coco" / "coco_mini_train"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ann", default=str(coco / "person_keypoints.json"))
    parser.add_argument("--images", default=str(coco / "images"))
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=256, help="samples timed per loader setting")
    parser.add_argument("--train-steps", type=int, default=0)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    heat = (size[0] // 4, size[1] // 4)
    print(f"CPU: {cpu_summary()}; torch threads {torch.get_num_threads()}; data {args.ann}")

    print(f"1. DataLoader, {args.workers} workers, batch {args.batch}, student {args.size}, augmented")
    for teacher in (None, *TEACHER_TARGETS):
        dataset = TopDownDataset(args.ann, args.images, train=True, image_size=size, heatmap_size=heat)
        if teacher:
            attach_teacher_targets(dataset, teacher, size, heat)
        rate = loader_samples_per_s(dataset, args.batch, args.workers, args.samples)
        print(f"   {teacher or 'no teacher':22s} {rate:7.1f} samples/s")

    dataset = TopDownDataset(args.ann, args.images, train=True, image_size=size, heatmap_size=heat)
    batch = collate_topdown([dataset[i % len(dataset)] for i in range(64)])
    builder = BatchTargets(size, heat, sigma=2.0)
    print(f"2. sigma schedule: re-encoding a batch of 64 targets: {median_ms(lambda: builder.gaussian(batch['joints'], 4.0)):.2f} ms")
    print(f"3. heatmap loss, forward + backward on (64, 17, {heat[0]}, {heat[1]}):")
    for name in HEATMAP_LOSSES:
        loss = make_heatmap_loss(name)
        pred = torch.randn(64, 17, *heat, requires_grad=True)

        def step(loss: torch.nn.Module = loss, pred: torch.Tensor = pred) -> None:
            loss(pred, batch["target"], batch["target_weight"]).backward()

        print(f"   {name:7s} {median_ms(step):.2f} ms")
    if args.train_steps:
        print(f"4. SDPose-T {args.size} training, batch {args.batch}, {args.workers} workers, "
              f"median of steps 2..{args.train_steps}:")
        for teacher in (None, "pp-tinypose-128x96"):
            rate = train_samples_per_s(args.ann, args.images, size, args.batch, args.workers, args.train_steps,
                                       teacher)
            print(f"   {teacher or 'no teacher':22s} {rate:7.1f} samples/s")


if __name__ == "__main__":
    main()
