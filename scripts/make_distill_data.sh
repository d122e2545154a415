#!/usr/bin/env bash
# The distillation data of issues 9 / 16 (the convergence probe and the distill-cpu recipe), rebuilt offline from
# ../shared: PP-TinyPose 256x192 (flip, DARK) as the teacher everywhere, RTMDet-nano boxes for unlabelled photos.
#
#   bash scripts/make_distill_data.sh [OUT]      # default OUT: runs/distill-data (git-ignored); ~45 min on 2 cores
#
# OUT/lsp_val_coco17.json          LSP-extended ids 9001-10000 as COCO-17: the 12 limb joints, face unlabelled
# OUT/lsp_train_coco17.json        ids 1-9000: LSP's limbs kept, the teacher fills the face joints
# OUT/coco_mini_train_filled.json  coco_mini_train GT kept, unlabelled joints filled by the teacher
# OUT/har_tinypose.json            HAR action photos: RTMDet-nano people, teacher keypoints
# Each JSON's `info` records the teacher, thresholds and kept / dropped counts; keypoint_scores hold the
# per-joint confidence (1 for human labels) that --confidence-weights reads.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/distill-data}
DATA=${SDPOSE_DATA:-../shared/data}
mkdir -p "$OUT"
python -m sdpose_core lsp-coco --split val --out "$OUT/lsp_val_coco17.json"
python -m sdpose_core lsp-coco --split train --teacher pp-tinypose --out "$OUT/lsp_train_coco17.json"
python -m sdpose_core pseudo-label "$DATA/coco/coco_mini_train/images" \
  --fill-ann "$DATA/coco/coco_mini_train/person_keypoints.json" --teacher pp-tinypose \
  --out "$OUT/coco_mini_train_filled.json"
python -m sdpose_core pseudo-label "$DATA/unlabeled/har_actions" --teacher pp-tinypose --detector rtmdet-nano \
  --out "$OUT/har_tinypose.json"
