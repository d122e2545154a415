"""The demo recipe's ablation table: AP of every run and cycle on the held-out sets, plus the teacher.

    python scripts/ablation_table.py --out runs/ablation.json      # after scripts/demo_recipe.sh trained

Rows (the paper's ablation, on our data and schedule): (a) 1 cycle, no distillation (TokenPose-style);
(b) 3 cycles, no distillation; (c) SDPose, 3 cycles with self-distillation — AP of cycle 1 (the deployed
single pass) and cycle 3; and MediaPipe BlazePose, the teacher, as the anchor. Every model is scored with
GT boxes, no flip test, DARK decoding, on three held-out sets: the real COCO validation split (people no
run has seen) and the teacher-labelled held-out frames / photos (where the teacher is the reference, so
it has no row there). Next to AP, `mOKS` is the mean OKS of each person's prediction with its own ground
truth (the quantity AP thresholds at 0.50..0.95): it still separates models whose AP is 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sdpose_core.evaluation.evaluate import run_baseline_evaluation, run_evaluation
from sdpose_core.inference.baseline_factory import build_baseline
from sdpose_core.paths import data_root

RUNS = {
    "(a) 1 cycle, no distillation": "runs/ablation-a",
    "(b) 3 cycles, no distillation": "runs/ablation-b",
    "(c) SDPose: 3 cycles + self-distillation": "runs/demo-default",
    # not part of the ablation (longer schedule): the embedded default, (c) trained further
    "shipped default: (c) + 4 epochs at batch 16": "runs/demo-default-long",
}


def held_out_sets(data: Path) -> dict[str, tuple[str, str]]:
    return {
        "real COCO val (29 people)": ("runs/data/real_val.json", str(data / "coco")),
        "teacher-labelled photos": ("runs/data/ccp.holdout.json", str(data / "unlabeled" / "ccp_fullbody")),
        "teacher-labelled video frames": ("runs/data/videos.holdout.json", "runs/data/frames"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/ablation.json")
    parser.add_argument("--weights-name", default="final", help="subfolder of each run: final or best")
    parser.add_argument("--no-teacher", action="store_true")
    args = parser.parse_args(argv)
    sets = held_out_sets(data_root())
    rows = []
    for label, run in RUNS.items():
        weights = Path(run) / args.weights_name
        if not weights.is_dir():
            print(f"skip {label}: {weights} not found (train it with scripts/demo_recipe.sh)", file=sys.stderr)
            continue
        row = {"row": label, "weights": str(weights), "ap": {}, "moks": {}}
        for set_name, (ann, images) in sets.items():
            report = run_evaluation(weights=str(weights), ann=ann, images=images, boxes="gt", flip=False)
            row["ap"][set_name] = {c: round(m["AP"], 4) for c, m in report["metrics"].items()}
            row["moks"][set_name] = {f"cycle{c}": round(v, 4) for c, v in mean_oks(str(weights), ann, images).items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if not args.no_teacher:
        ann, images = sets["real COCO val (29 people)"]
        with build_baseline("mediapipe") as pose:
            report = run_baseline_evaluation(pose, ann=ann, images=images, boxes="gt")
        rows.append({"row": "MediaPipe BlazePose (teacher)", "weights": "mediapipe==0.10.21 model_complexity=1",
                     "ap": {"real COCO val (29 people)": {"mediapipe": round(report["metrics"]["mediapipe"]["AP"], 4)}}})
        print(json.dumps(rows[-1]), flush=True)
    out = {"command": "python scripts/ablation_table.py " + " ".join(argv or sys.argv[1:]),
           "created": time.strftime("%Y-%m-%d %H:%M:%S"), "sets": sets, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(markdown_table(out))
    return 0


def mean_oks(weights: str, ann: str, images: str) -> dict[int, float]:
    """Mean over GT people of the OKS between the person and the prediction made from its own GT box."""
    import numpy as np

    from sdpose_core.data import TopDownDataset
    from sdpose_core.evaluation.loop import collect_predictions
    from sdpose_core.evaluation.oks import compute_oks
    from sdpose_core.weights import load_pretrained

    model = load_pretrained(weights).eval()
    config = model.config
    data = TopDownDataset(ann, images, train=False, image_size=tuple(config.image_size),
                          heatmap_size=tuple(config.heatmap_size))
    predictions = collect_predictions(model, data)
    areas = {a["id"]: a["area"] for a in data.coco.dataset["annotations"]}
    samples = data.samples
    gt = samples.keypoints[predictions.indices]
    area = np.array([areas[int(i)] for i in samples.ann_id[predictions.indices]])
    sigmas = data.layout.sigmas_array()
    result = {}
    for cycle, keypoints in predictions.keypoints.items():
        oks = [compute_oks(gt[i:i + 1], area[i:i + 1], keypoints[i:i + 1], sigmas)[0, 0] for i in range(len(gt))]
        result[cycle] = float(np.mean(oks))
    return result


def markdown_table(result: dict) -> str:
    """One line per row: AP / mOKS of cycle 1 and cycle 3 on every set."""
    sets = list(result["sets"])
    head = " | ".join(f"{s}: AP c1 | AP c3 | mOKS c1 | mOKS c3" for s in sets)
    lines = [f"| row | {head} |", "|---|" + "---|---|---|---|" * len(sets)]
    for row in result["rows"]:
        cells = []
        for s in sets:
            ap, moks = row["ap"].get(s, {}), row.get("moks", {}).get(s, {})
            if "mediapipe" in ap:
                cells += [f"{ap['mediapipe']:.3f}", "", "", ""]
            elif not ap:
                cells += ["(reference)", "", "", ""]
            else:
                cells += [f"{ap['cycle1']:.3f}", f"{ap['cycle3']:.3f}" if "cycle3" in ap else "—",
                          f"{moks['cycle1']:.3f}", f"{moks['cycle3']:.3f}" if "cycle3" in moks else "—"]
        lines.append(f"| {row['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
