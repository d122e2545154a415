"""Why a trained model scores what it does: fit (train vs val), which joints, which errors, which poses.

    python scripts/plateau_diagnosis.py --weights RUN/final --val-ann V.json --val-images DIR \
        [--train-ann T.json --train-images DIR] [--people 1000] [--cycles N]

For the validation split and (optionally) a seeded sample of the training people, seen without
augmentation, with GT boxes (`sdpose_core.analysis`: the studio's Samples-tab analysis):
- mean OKS, the share of people at OKS >= 0.5 and >= 0.75 and COCO AP, per cycle. Train ~ val means the
  model underfits (more optimisation or capacity would help, more data would not); train >> val means it
  overfits;
- Ronchi & Perona's error classes of every labelled joint (good / jitter / inversion = left-right mirror
  / swap = another person / miss), in all and per joint;
- the same per torso orientation from the GT (shoulders above the hips = upright, below = upside down,
  else sideways): LSP-extended holds many inverted athletes, which an average pose cannot fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdpose_core.analysis.sample_sets import SampleSet, load_sample_set  # noqa: E402
from sdpose_core.analysis.set_analysis import PersonRecord, SetAnalysis, analyse_set  # noqa: E402
from sdpose_core.analysis.set_predictions import predict_set  # noqa: E402
from sdpose_core.analysis.taxonomy import ERROR_CLASSES  # noqa: E402
from sdpose_core.errors import SDPoseError  # noqa: E402
from sdpose_core.inference.predictor import Predictor  # noqa: E402
from sdpose_core.keypoints import TORSO_ORIENTATIONS, torso_orientation  # noqa: E402


def oks_and_class_shares(people: list[PersonRecord]) -> tuple[np.ndarray, str]:
    """(each person's OKS, the share of their classified joints in each error class as table cells)."""
    oks = np.asarray([p.oks for p in people])
    classes = np.concatenate([p.classes[p.classes >= 0] for p in people])
    shares = " | ".join(f"{np.mean(classes == i) if len(classes) else 0.0:.2f}" for i in range(len(ERROR_CLASSES)))
    return oks, shares


def summary_rows(analysis: SetAnalysis, split: str) -> list[str]:
    rows = []
    for cycle in sorted(analysis.people):
        people = analysis.people[cycle]
        oks, shares = oks_and_class_shares(people)
        rows.append(f"| {split} | {cycle} | {len(people)} | {oks.mean():.3f} | {np.mean(oks >= 0.5):.3f} | "
                    f"{np.mean(oks >= 0.75):.3f} | {analysis.set_ap[cycle]:.3f} | {shares} |")
    return rows


def joint_rows(analysis: SetAnalysis, sample_set: SampleSet, cycle: int) -> list[str]:
    counts = analysis.counts[cycle - 1]
    people = analysis.people[cycle]
    ks = np.stack([p.ks for p in people])
    rows = []
    for joint in np.flatnonzero(analysis.scored):
        total = counts[joint].sum()
        if total == 0:
            continue
        shares = " | ".join(f"{counts[joint, i] / total:.2f}" for i in range(len(ERROR_CLASSES)))
        rows.append(f"| {sample_set.layout.joints[joint]} | {total} | {np.nanmean(ks[:, joint]):.3f} | {shares} |")
    return rows


def orientation_rows(analysis: SetAnalysis, sample_set: SampleSet, cycle: int) -> list[str]:
    groups: dict[str, list] = {name: [] for name in TORSO_ORIENTATIONS}
    for person in analysis.people[cycle]:
        gt = sample_set.people_arrays(person.image_id)[0][person.person_index]
        groups[torso_orientation(gt, sample_set.layout)].append(person)
    total = sum(len(g) for g in groups.values())
    rows = []
    for name, people in groups.items():
        if not people:
            continue
        oks, shares = oks_and_class_shares(people)
        rows.append(f"| {name} | {len(people)} ({len(people) / total:.0%}) | {oks.mean():.3f} | "
                    f"{np.mean(oks >= 0.5):.3f} | {shares} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="our weights folder (a run's final/ or best/) or last.pt")
    p.add_argument("--val-ann", required=True)
    p.add_argument("--val-images", required=True)
    p.add_argument("--train-ann", help="training annotations: a seeded sample of them, unaugmented")
    p.add_argument("--train-images")
    p.add_argument("--people", type=int, default=1000, help="images sampled from each split (default 1000)")
    p.add_argument("--cycles", type=int, help="cycles to run (default: the model's)")
    args = p.parse_args()
    predictor = Predictor(weights=args.weights, detector=None, allow_pickle=args.weights.endswith(".pt"))
    splits = [("val", args.val_ann, args.val_images)]
    if args.train_ann:
        splits.append(("train", args.train_ann, args.train_images))
    header = " | ".join(ERROR_CLASSES)
    print(f"weights: {predictor.weights_info.description}")
    print(f"\n| split | cycle | people | mean OKS | OKS>=0.5 | OKS>=0.75 | AP | {header} |")
    print("|---|---|---|---|---|---|---|" + "---|" * len(ERROR_CLASSES))
    analyses = {}
    for split, ann, images in splits:
        sample_set = load_sample_set(ann, images).sample(args.people)
        analysis = analyse_set(sample_set, predict_set(sample_set, predictor, cycles=args.cycles))
        analyses[split] = (analysis, sample_set)
        for row in summary_rows(analysis, split):
            print(row)
    analysis, sample_set = analyses["val"]
    for cycle in sorted({1, max(analysis.people)}):
        print(f"\nval, cycle {cycle}, per joint (share of the labelled joints in each class; ks = the joint's "
              "OKS term)")
        print(f"| joint | labelled | mean ks | {header} |")
        print("|---|---|---|" + "---|" * len(ERROR_CLASSES))
        print("\n".join(joint_rows(analysis, sample_set, cycle)))
    print("\nval, cycle 1, by the GT torso orientation")
    print(f"| orientation | people | mean OKS | OKS>=0.5 | {header} |")
    print("|---|---|---|---|" + "---|" * len(ERROR_CLASSES))
    print("\n".join(orientation_rows(analysis, sample_set, 1)))


if __name__ == "__main__":
    try:
        main()
    except SDPoseError as error:  # a missing file or weights: say which, not a traceback
        sys.exit(f"error: {error}")
