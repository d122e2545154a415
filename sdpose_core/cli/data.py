"""`sdpose pseudo-label`, `sdpose lsp-coco`, `sdpose make-splits` and `sdpose synthesize-crowd`: training data."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_data_commands(sub: argparse._SubParsersAction) -> None:
    from sdpose_core.detection.factory import DETECTOR_NAMES
    from sdpose_core.inference.pseudo_label import DEFAULT_TEACHER, TEACHERS

    p = sub.add_parser(
        "pseudo-label", help="label unlabeled person images / videos with a teacher (COCO JSON)",
        description="Run the person detector and the teacher (MediaPipe BlazePose or PP-TinyPose) on every image "
                    "(or every --stride-th video frame) of SOURCE and keep confident people and joints as COCO "
                    "keypoints. With --fill-ann, fill the unlabelled joints of a labelled COCO file instead.")
    p.add_argument("source", help="folder of images, a video, or a folder of videos (with --fill-ann: the images "
                                  "folder of that file)")
    p.add_argument("--out", required=True, help="COCO keypoint JSON to write")
    p.add_argument("--teacher", choices=TEACHERS, default=DEFAULT_TEACHER,
                   help=f"mediapipe = BlazePose full; pp-tinypose = PP-TinyPose 256x192 with flip (default "
                        f"{DEFAULT_TEACHER})")
    p.add_argument("--detector", choices=DETECTOR_NAMES, default="best",
                   help="person boxes for the teacher (default: the best present, RTMDet-nano when it is there)")
    p.add_argument("--fill-ann", default=None, metavar="GT.json",
                   help="a labelled COCO-17 file: keep its joints, fill its unlabelled (v=0) ones with the "
                        "teacher's confident joints on each person's GT box (no detector)")
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

    p = sub.add_parser(
        "lsp-coco", help="LSP-extended as COCO-17: train (ids 1-9000, face from a teacher) or val (9001-10000)",
        description="Map LSP-extended's 12 limb joints onto COCO-17 (head_top and neck dropped; area = 0.53 x box "
                    "w x h). val: limbs only, face unlabelled. train: plus the teacher's confident face joints on "
                    "the GT box. The output goes with the images folder lsp_extended/images.")
    p.add_argument("--split", choices=("train", "val"), required=True)
    p.add_argument("--out", required=True, help="COCO-17 JSON to write")
    p.add_argument("--lsp", default=None, help="LSP-extended folder (crowdpose.json, images/); default: the shared one")
    p.add_argument("--teacher", choices=(*TEACHERS, "none"), default="pp-tinypose",
                   help="face teacher for the train split (default pp-tinypose; none: face unlabelled)")
    p.add_argument("--joint-threshold", type=float, default=None, help="teacher score to label a face joint (0.5)")
    p.add_argument("--head-check", type=float, default=1.0,
                   help="face joints farther than this many head lengths from LSP's head centre are refused")
    p.set_defaults(func=cmd_lsp_coco)

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

    if args.fill_ann:
        return _fill_annotations(args)
    margins = keypoint_box_margins(Path(args.margins_from) if args.margins_from else default_margins_file())
    cfg = PseudoLabelConfig(joint_threshold=args.joint_threshold, min_joints=args.min_joints,
                            video_stride=args.stride, whole_image=args.whole_image or args.detector == "whole-image",
                            holdout_every=args.holdout_every, margins=margins)
    detector = None
    if not cfg.whole_image:
        from sdpose_core.detection import build_detector

        detector = build_detector(args.detector)
    counts = pseudo_label(args.source, args.out, cfg, frames_dir=args.frames_dir, teacher=args.teacher,
                          detector=detector, limit=args.limit)
    print(f"{args.out}: {format_counts(counts)}")
    return 0


def _fill_annotations(args: argparse.Namespace) -> int:
    from sdpose_core.data.annotations import read_json
    from sdpose_core.data.teacher_sets import fill_unlabelled
    from sdpose_core.errors import ConfigError
    from sdpose_core.inference.pseudo_label import build_teacher, format_counts, write_json_atomic

    ignored = [flag for flag, used in (("--detector", args.detector != "best"), ("--whole-image", args.whole_image),
                                       ("--frames-dir", args.frames_dir), ("--holdout-every", args.holdout_every),
                                       ("--limit", args.limit is not None), ("--margins-from", args.margins_from))
               if used]
    if ignored:
        raise ConfigError(f"--fill-ann runs the teacher on the file's own GT boxes: {', '.join(ignored)} do not apply")
    coco = read_json(Path(args.fill_ann), "annotation file")
    filled, counts = fill_unlabelled(coco, args.source, build_teacher(args.teacher), threshold=args.joint_threshold)
    write_json_atomic(filled, Path(args.out))
    print(f"{args.out}: {format_counts(counts)}")
    return 0


def cmd_lsp_coco(args: argparse.Namespace) -> int:
    from sdpose_core.data.lsp import load_lsp, lsp_coco17, lsp_coco17_with_teacher, lsp_folder
    from sdpose_core.inference.pseudo_label import build_teacher, format_counts, write_json_atomic

    folder = Path(args.lsp) if args.lsp else lsp_folder()
    lsp = load_lsp(folder / "crowdpose.json")
    if args.split == "val" or args.teacher == "none":
        coco = lsp_coco17(lsp, args.split)
        counts = {"people": len(coco["annotations"]),
                  "people_with_joints": sum(a["num_keypoints"] > 0 for a in coco["annotations"])}
    else:
        coco, counts = lsp_coco17_with_teacher(lsp, args.split, folder / "images", build_teacher(args.teacher),
                                               threshold=args.joint_threshold, max_head_lengths=args.head_check)
    write_json_atomic(coco, Path(args.out))
    print(f"{args.out} (images: {folder / 'images'}): {format_counts(counts)}")
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
