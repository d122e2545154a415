"""Where does a plateaued SDPose sit: do its keypoint tokens already look at the right place, or is it the readout?

    OMP_WAIT_POLICY=PASSIVE python scripts/attention_pose_probe.py --weights RUN/final \\
        --ann lsp_val_coco17.json --images ../shared/data/lsp_extended/images

For every GT person of the set (GT boxes, no flip) it runs the model once and decodes three poses per person:
the heatmaps of cycle 1 (what the model predicts), and two poses read from the keypoint tokens' attention
instead of the heatmaps: the centre of the visual token each keypoint token attends to most (head-averaged),
and the attention-weighted mean of the visual tokens' centres, in the first block of cycle 1 (where the
attention hint acts) and in the last block of every cycle. It prints mean OKS against GT for each. When the
attention poses beat the heatmap pose, the transformer has found the joints and the heatmap head has not yet
learned to say so; when they are as poor, the features or the attention are still the bottleneck.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdpose_core.data import TopDownDataset, collate_topdown  # noqa: E402
from sdpose_core.evaluation.oks import compute_oks, oks_area  # noqa: E402
from sdpose_core.heatmaps import heatmap_peaks, heatmap_to_image_coords  # noqa: E402
from sdpose_core.precision import cpu_summary  # noqa: E402
from sdpose_core.weights.load import load_model  # noqa: E402


def patch_centres(grid: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """(patches, 2) x, y of every visual token's patch centre in crop pixels, row-major like the tokens."""
    rows, cols = grid
    height, width = image_size
    ys, xs = np.meshgrid((np.arange(rows) + 0.5) * height / rows, (np.arange(cols) + 0.5) * width / cols,
                         indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def attention_poses(attention: torch.Tensor, centres: np.ndarray, keypoints: int) -> tuple[np.ndarray, np.ndarray]:
    """(argmax pose, weighted-mean pose), each (B, K, 2) crop pixels, from (B, heads, N, N) or (B, heads, K, N)."""
    on_patches = attention.float().mean(dim=1)[:, :keypoints, keypoints:].numpy()  # (B, K, patches)
    argmax = centres[on_patches.argmax(axis=-1)]
    weights = on_patches / np.maximum(on_patches.sum(axis=-1, keepdims=True), 1e-12)
    return argmax, weights @ centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--ann", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    model, info = load_model(args.weights)
    model.eval()
    config = model.config
    dataset = TopDownDataset(args.ann, args.images, train=False, boxes="gt", image_size=config.image_size,
                             heatmap_size=config.heatmap_size)
    k = config.num_keypoints
    centres = patch_centres(model.patch_grid, config.image_size)
    crop_to_heatmap = np.array([config.heatmap_size[1] / config.image_size[1],
                                config.heatmap_size[0] / config.image_size[0]])
    poses: dict[str, list[np.ndarray]] = {}
    metas = []
    with torch.no_grad():
        for start in range(0, len(dataset), args.batch_size):
            batch = collate_topdown([dataset[i] for i in range(start, min(start + args.batch_size, len(dataset)))])
            images = batch["image"]
            tokens = model.embed(images)
            found = {"block 1, cycle 1": attention_poses(model.keypoint_attention(tokens), centres, k)}
            last = model.attention_maps(images, cycles=config.cycles)
            for cycle, maps in enumerate(last, start=1):
                found[f"last block, cycle {cycle}"] = attention_poses(maps, centres, k)
            heat = model(images, cycles=1)[0].heatmaps.float().numpy()
            coords, _ = heatmap_peaks(heat, "dark")
            entries = {"heatmaps, cycle 1": coords}
            for name, (argmax, mean) in found.items():
                entries[f"attention argmax, {name}"] = argmax * crop_to_heatmap
                entries[f"attention mean, {name}"] = mean * crop_to_heatmap
            centers, scales = np.asarray(batch["meta"]["center"]), np.asarray(batch["meta"]["scale"])
            for name, heatmap_xy in entries.items():
                poses.setdefault(name, []).append(heatmap_to_image_coords(heatmap_xy, centers, scales,
                                                                          config.heatmap_size))
            metas.append(np.asarray(batch["meta"]["ann_id"]))
    ann_ids = np.concatenate(metas)
    use_area = dataset.layout.name != "crowdpose"
    gt = dataset.samples.keypoints
    areas = [oks_area(dataset.coco.anns[int(a)], use_area=use_area) for a in ann_ids]
    sigmas = dataset.layout.sigmas_array()
    print(f"CPU: {cpu_summary()}; weights: {info.description}; {len(ann_ids)} people of {args.ann}")
    print(f"{'pose read from':45s} mean OKS")
    for name, parts in poses.items():
        xy = np.concatenate(parts)
        predicted = np.concatenate([xy, np.ones((*xy.shape[:2], 1))], axis=-1)
        oks = [compute_oks(gt[i:i + 1], areas[i], predicted[i:i + 1], sigmas)[0, 0] for i in range(len(ann_ids))]
        print(f"{name:45s} {np.mean(oks):.4f}")


if __name__ == "__main__":
    main()
