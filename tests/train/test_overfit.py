"""Overfit sanity check: SDPose-T learns 4 real people well enough to score AP >= 0.9 on them.

Model: the real SDPose-T (StemNet, dim 192, depth 6, 8 heads, 3 cycles, SDPose loss over all cycles)
with a small input, 64x48 (heatmaps 16x12, 4x4 patches of 4x3), so that 400 full-batch steps fit in well
under a minute on a 2-core CPU (128x96 took ~6 min on an AVX2-only EPYC in the suite). It runs on torch's
default threads (all cores): the suite runs one test at a time. Data: the 4 single-person images of coco/coco_mini_train with the most
labelled joints (GT boxes, no augmentation). Scoring goes through `sdpose evaluate`'s code path
(`run_evaluation`: weights folder -> dataset -> one multi-cycle forward -> DARK decoding -> COCOeval),
on the same images and people.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from sdpose_core.evaluation.evaluate import run_evaluation
from sdpose_core.train import TrainConfig, train

# single-person images with 15-16 labelled joints and a person large enough to matter
IMAGE_IDS = (535506, 84533, 234748, 30752)


@pytest.mark.slow
def test_sdpose_t_overfits_four_people(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "coco" / "coco_mini_train"
    data = json.loads((source / "person_keypoints.json").read_text())
    data["images"] = [image for image in data["images"] if image["id"] in IMAGE_IDS]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in IMAGE_IDS]
    assert len(data["images"]) == 4 and len(data["annotations"]) == 4
    ann = tmp_path / "four_people.json"
    ann.write_text(json.dumps(data))

    config = TrainConfig(
        out=str(tmp_path / "run"), train_ann=str(ann), train_images=str(source / "images"), model="sdpose-t",
        image_size=(64, 48), epochs=400, batch_size=4, workers=0, augment=False, warmup_iters=20, seed=0,
        save_every=10**6, log_every=100, progress=False,
    )
    start = time.perf_counter()
    result = train(config)
    train_s = time.perf_counter() - start
    assert result.global_step == 400

    report = run_evaluation(str(tmp_path / "run" / "final"), str(ann), str(source / "images"))
    aps = {cycle: metrics["AP"] for cycle, metrics in report["metrics"].items()}
    print(f"overfit: {train_s:.0f} s training, AP per cycle {aps}")
    assert report["num_instances"] == 4
    assert aps["cycle1"] >= 0.9, f"AP per cycle {aps} after {train_s:.0f} s"

    losses = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    iters = [r["loss"] for r in losses if r["kind"] == "iter"]
    assert iters[-1] < 0.1 * iters[0]
