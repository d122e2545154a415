"""`sdpose pseudo-label`, `sdpose make-splits` and `sdpose synthesize-crowd`: the demo recipe's training data."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-label", help="label unlabeled person images / videos with the MediaPipe teacher (COCO JSON)",
        description="Run the person detector and MediaPipe BlazePose on every image (or every --stride-th "
                    "video frame) of SOURCE and keep confident people and joints as COCO keypoints.")
    p.add_argument("source", help="folder of images, a video, or a folder of videos")
    p.add_argument("--out", required=True, help="COCO keypoint JSON to write")
    p.add_argument("--frames-dir", help="where sampled video frames are saved (needed for videos)")
    p.add_argument("--stride", type=int, default=5, help="label every N-th video frame (default 5)")
    p.add_argument("--whole-image", action="store_true", help="each image is one person crop: no detector")
    p.add_argument("--joint-threshold", type=float, default=0.5, help="teacher visibility to label a joint")
    p.add_argument("--min-joints", type=int, default=8, help="labelled joints a kept person needs")
    p.add_argument("--holdout-every", type=int, default=0,
                   help="every N-th image (video: every N-th file) goes to OUT.holdout.json")
    p.add_argument("--margins-from", default=None,
                   help="COCO JSON to measure box margins on (default: the shared coco_mini_train)")
    p.add_argument("--limit", type=int, default=None, help="stop after this many images (smoke runs)")
    p.set_defaults(func=cmd_pseudo_label)

    p = sub.add_parser("make-splits", help="write the demo recipe's real-GT train / validation split")
    p.add_argument("--out", required=True, help="folder for real_train.json and real_val.json")
    p.add_argument("--val-every", type=int, default=6, help="every N-th coco_mini_train image is held out")
    p.set_defaults(func=cmd_make_splits)

    p = sub.add_parser(
        "synthesize-crowd", help="paste real COCO people into labelled images to make crowded training crops")
    p.add_argument("--base-ann", required=True)
    p.add_argument("--base-images", required=True)
    p.add_argument("--donor-ann", default=None, help="default: the shared coco_mini_train")
    p.add_argument("--donor-images", default=None)
    p.add_argument("--exclude-donor-images", default=None,
                   help="COCO JSON whose image ids are never used as donors (the validation split)")
    p.add_argument("--out", required=True, help="output folder (images/ + person_keypoints.json)")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--max-pasted", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synthesize_crowd)


def cmd_pseudo_label(args: argparse.Namespace) -> int:
    from sdpose_core.inference.pseudo_label import (
        PseudoLabelConfig,
        default_margins_file,
        format_counts,
        keypoint_box_margins,
        pseudo_label,
    )

    margins = keypoint_box_margins(Path(args.margins_from) if args.margins_from else default_margins_file())
    cfg = PseudoLabelConfig(joint_threshold=args.joint_threshold, min_joints=args.min_joints,
                            video_stride=args.stride, whole_image=args.whole_image,
                            holdout_every=args.holdout_every, margins=margins)
    counts = pseudo_label(args.source, args.out, cfg, frames_dir=args.frames_dir, limit=args.limit)
    print(f"{args.out}: {format_counts(counts)}")
    return 0


def cmd_make_splits(args: argparse.Namespace) -> int:
    from sdpose_core.data.splits import write_demo_splits

    counts = write_demo_splits(args.out, val_every=args.val_every)
    print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_synthesize_crowd(args: argparse.Namespace) -> int:
    from sdpose_core.data.annotations import annotation_image_ids
    from sdpose_core.data.crowd_synthesis import default_donors, synthesize_crowds

    shared_ann, shared_images = default_donors()
    exclude = annotation_image_ids(args.exclude_donor_images) if args.exclude_donor_images else []
    out = synthesize_crowds(
        base_ann=args.base_ann, base_images=args.base_images,
        donor_ann=args.donor_ann or shared_ann, donor_images=args.donor_images or shared_images,
        out_dir=args.out, count=args.count, seed=args.seed, max_pasted=args.max_pasted,
        exclude_donor_image_ids=exclude,
    )
    print(f"wrote {out}")
    return 0
