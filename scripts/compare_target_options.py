"""How fast SDPose-T leaves the average pose with each opt-in loss / target option: same data, seed and steps.

    OMP_NUM_THREADS=1 python scripts/compare_target_options.py --steps 120               # the 4-person fit set
    python scripts/compare_target_options.py --ann A.json --images DIR --val-ann V.json --val-images VDIR \\
        --steps 2000 --batch 32 --augment --variants mse kl fg-mse --out /work/runs/compare

Each variant trains the real SDPose-T (3 cycles) at `--size` for `--steps` steps with the official recipe otherwise,
then `sdpose evaluate`'s code path scores its final weights (cycle 1, GT boxes, DARK): AP, and the spread of the
predicted poses (mean distance of each person's predicted joints, in crop-normalised units, from the mean
predicted pose: ~0 when every person gets the average pose). Without --ann the set is the 4 single-person
coco_mini_train images of tests/train/test_overfit.py, trained and scored on themselves (a learning-speed probe,
not a generalisation number).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sdpose_core.paths import data_root
from sdpose_core.precision import cpu_summary

VARIANTS: dict[str, dict[str, Any]] = {
    "mse": {},
    "kl": {"heatmap_loss": "kl"},
    "fg-mse": {"heatmap_loss": "fg-mse"},
    "mse+sigma6": {"sigma_start": 6.0},
    "kl+sigma6": {"heatmap_loss": "kl", "sigma_start": 6.0},
    "kl+teacher": {"heatmap_loss": "kl", "teacher_targets": "pp-tinypose-128x96"},
    "mse+teacher": {"teacher_targets": "pp-tinypose-128x96"},
}
FOUR_PEOPLE = (535506, 84533, 234748, 30752)  # tests/train/test_overfit.py


def four_people_set(folder: Path) -> tuple[str, str]:
    source = data_root() / "coco" / "coco_mini_train"
    data = json.loads((source / "person_keypoints.json").read_text())
    data["images"] = [image for image in data["images"] if image["id"] in FOUR_PEOPLE]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in FOUR_PEOPLE]
    path = folder / "four_people.json"
    path.write_text(json.dumps(data))
    return str(path), str(source / "images")


def pose_spread(predictions_file: Path) -> float:
    """Mean distance of each person's joints from the mean pose, in units of the person's box size."""
    results = json.loads(predictions_file.read_text())
    poses = []
    for result in results:
        xy = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        centre, size = xy.mean(axis=0), max(np.ptp(xy, axis=0).max(), 1e-6)
        poses.append((xy - centre) / size)
    poses = np.stack(poses)
    return float(np.linalg.norm(poses - poses.mean(axis=0), axis=-1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ann")
    parser.add_argument("--images")
    parser.add_argument("--val-ann")
    parser.add_argument("--val-images")
    parser.add_argument("--variants", nargs="+", default=["mse", "kl", "fg-mse", "mse+sigma6"], choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", default="128x96")
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--warmup-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    from sdpose_core.evaluation.evaluate import run_evaluation
    from sdpose_core.train import TrainConfig, train

    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.out) if args.out else Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        ann, images = (args.ann, args.images) if args.ann else four_people_set(root)
        val_ann, val_images = (args.val_ann, args.val_images) if args.val_ann else (ann, images)
        print(f"CPU: {cpu_summary()}; train {ann}; score {val_ann}; {args.steps} steps, batch {args.batch}, "
              f"{args.size}, augment {args.augment}, seed {args.seed}")
        print(f"{'variant':12s} {'AP':>6s} {'spread':>7s} {'first loss':>11s} {'last loss':>10s} {'train s':>8s}")
        for name in args.variants:
            run = root / name
            config = TrainConfig(out=str(run), train_ann=ann, train_images=images, image_size=size,
                                 batch_size=args.batch, epochs=10**6, max_steps=args.steps, workers=args.workers,
                                 augment=args.augment, warmup_iters=args.warmup_iters, seed=args.seed,
                                 save_every=10**6, log_every=10, progress=False, **VARIANTS[name])
            start = time.perf_counter()
            train(config)
            train_s = time.perf_counter() - start
            records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            losses = [r["loss"] for r in records if r["kind"] == "iter"]
            weights = run / "final" if (run / "final").is_dir() else run / "last.pt"
            report = run_evaluation(str(weights), val_ann, val_images, cycles=1, save_preds=str(run / "preds"))
            ap = report["metrics"]["cycle1"]["AP"]
            spread = pose_spread(run / "preds_cycle1.json")
            print(f"{name:12s} {ap:6.3f} {spread:7.3f} {losses[0]:11.3e} {losses[-1]:10.3e} {train_s:8.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
