#!/usr/bin/env bash
# The embedded default weights and their ablation, end to end, on a CPU (see assets/MODEL_CARD.md).
# Every step is resumable: data steps are skipped when their output exists, training runs continue from
# their last.pt when the same command is run again. Run from the repository root:
#   bash scripts/demo_recipe.sh            # everything (hours on a 2-core CPU)
#   STAGE=data bash scripts/demo_recipe.sh # only the data (then STAGE=train, long, eval)
set -euo pipefail
DATA="${SDPOSE_DATA:-../shared/data}"
U="$DATA/unlabeled"
OUT=runs/data
STAGE="${STAGE:-all}"
mkdir -p "$OUT"

if [[ "$STAGE" == all || "$STAGE" == data ]]; then
  [[ -f $OUT/real_val.json ]] || sdpose make-splits --out $OUT
  [[ -f $OUT/inria.json ]] || sdpose pseudo-label "$U/inria_pedestrians" --whole-image --out $OUT/inria.json --holdout-every 20
  [[ -f $OUT/videos.json ]] || sdpose pseudo-label "$U/videos" --frames-dir $OUT/frames --stride 4 --out $OUT/videos.json --holdout-every 5
  [[ -f $OUT/ccp.json ]] || sdpose pseudo-label "$U/ccp_fullbody" --out $OUT/ccp.json --holdout-every 20
  [[ -f $OUT/crowd/person_keypoints.json ]] || sdpose synthesize-crowd --base-ann $OUT/ccp.json \
      --base-images "$U/ccp_fullbody" --exclude-donor-images $OUT/real_val.json --out $OUT/crowd --count 800
fi

if [[ "$STAGE" == all || "$STAGE" == train ]]; then
  # the three ablation runs share data and schedule; one thread each, side by side on 2 cores
  export OMP_NUM_THREADS=1
  sdpose train --recipe demo-default --cycles 1 --out runs/ablation-a --no-progress > runs/ablation-a.log 2>&1 &
  sdpose train --recipe demo-default --keypoint-token-weight 0 --visual-token-weight 0 --out runs/ablation-b \
      --no-progress > runs/ablation-b.log 2>&1 &
  sdpose train --recipe demo-default --out runs/demo-default --no-progress > runs/demo-default.log 2>&1 &
  wait
fi

if [[ "$STAGE" == all || "$STAGE" == long ]]; then
  # the shipped model: run (c) trained further on the same data (all cores, smaller batches = more updates)
  sdpose train --recipe demo-default --init-weights runs/demo-default/final --epochs 4 --batch-size 16 \
      --warmup-iters 50 --out runs/demo-default-long --no-progress > runs/demo-default-long.log 2>&1
fi

if [[ "$STAGE" == all || "$STAGE" == eval ]]; then
  python scripts/ablation_table.py --out runs/ablation.json
  python scripts/ship_default.py --run runs/demo-default-long
fi
