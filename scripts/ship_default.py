"""Copy a trained run's weights into the embedded default `assets/sdpose-t-default/` (fp16 safetensors).

    python scripts/ship_default.py --run runs/demo-default          # the final weights of the recipe run

Writes model.safetensors (fp16) + config.json and `training.json` (the run's settings and its last
validation line), checks the shipped file reproduces the run's fp32 heatmaps, and prints the file size.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sdpose_core.weights import load_pretrained, save_pretrained

MAX_BYTES = 10 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="runs/demo-default")
    parser.add_argument("--which", default="final", choices=["final", "best"])
    parser.add_argument("--out", default="assets/sdpose-t-default")
    args = parser.parse_args()
    run = Path(args.run)
    model = load_pretrained(str(run / args.which)).eval()
    out = save_pretrained(model, args.out, half=True)
    size = (out / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        raise SystemExit(f"{out}/model.safetensors is {size / 2**20:.1f} MiB, over the 10 MiB budget")
    shipped = load_pretrained(str(out)).eval()
    height, width = model.config.image_size
    images = torch.randn(4, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pairs = zip(model(images), shipped(images), strict=True)
        diffs = [(a.heatmaps - b.heatmaps).abs().max().item() for a, b in pairs]
    training = json.loads((run / "train_config.json").read_text())
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
              if '"kind": "epoch"' in line]
    (out / "training.json").write_text(json.dumps({
        "run": str(run), "weights": args.which, "train": training.get("train", training),
        "last_epoch": epochs[-1] if epochs else None,
        "fp16_max_abs_heatmap_diff_per_cycle": diffs,
    }, indent=2) + "\n")
    print(f"shipped {run / args.which} -> {out}: {size / 2**20:.2f} MiB fp16; "
          f"max |heatmap fp16 - fp32| per cycle {', '.join(f'{d:.2e}' for d in diffs)}")


if __name__ == "__main__":
    main()
