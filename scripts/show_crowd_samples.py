"""Contact sheet of synthesized crowd pictures with their keypoints, for the model card.

    python scripts/show_crowd_samples.py OUT.png [--seed 0] [--base-ann A.json --base-images DIR]

Runs `synthesize_crowds` on the shared data into a temporary folder (base and donors: coco_mini_train,
unless a base file is given, e.g. the teacher-labelled photos) and tiles 6 pictures 2 x 3,
each cropped around the anchor person and the people pasted next to it. Joints are
drawn with `draw_pose`: visible joints (v=2) in colour, occluded ones (v=1) as hollow grey rings;
pasted people get a yellow box and a caption saying whether they were pasted in front or behind.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sdpose_core.data.crowd_synthesis import synthesize_crowds
from sdpose_core.errors import SDPoseError
from sdpose_core.media.draw import draw_pose
from sdpose_core.media.images import load_image
from sdpose_core.paths import data_root

CELL = (420, 360)  # (height, width) of one tile
ROWS, COLUMNS = 2, 3


def _tile(image: np.ndarray, keypoints: np.ndarray, boxes: list[list[float]], caption: str) -> np.ndarray:
    """The image zoomed to fit a tile, with the skeletons drawn after zooming (even line widths)."""
    height, width = image.shape[:2]
    zoom = min((CELL[0] - 24) / height, CELL[1] / width)
    resized = cv2.resize(image, (max(1, round(width * zoom)), max(1, round(height * zoom))),
                         interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    scaled = keypoints.copy()
    scaled[..., :2] = (scaled[..., :2] + 0.5) * zoom - 0.5
    drawn = draw_pose(resized, scaled, score_threshold=1.5, thickness=2,
                      boxes_xywh=np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * zoom if boxes else None)
    tile = np.full((*CELL, 3), 255, dtype=np.uint8)
    top, left = 24 + (CELL[0] - 24 - drawn.shape[0]) // 2, (CELL[1] - drawn.shape[1]) // 2
    tile[top:top + drawn.shape[0], left:left + drawn.shape[1]] = drawn
    cv2.putText(tile, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def _focus(people: list[dict], image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 around the anchor and the people pasted next to it (20 % margin)."""
    boxes = np.array([a["bbox"] for a in people
                      if a["synthesis"]["source"] == "donor" or a["synthesis"].get("anchor")], dtype=np.float64)
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
    margin = 0.2 * max(x1 - x0, y1 - y0)
    return (max(0, int(x0 - margin)), max(0, int(y0 - margin)),
            min(image_hw[1], int(x1 + margin)), min(image_hw[0], int(y1 + margin)))


def contact_sheet(json_path: Path) -> np.ndarray:
    data = json.loads(json_path.read_text(encoding="utf-8"))
    tiles = []
    for entry in data["images"][: ROWS * COLUMNS]:
        people = [a for a in data["annotations"] if a["image_id"] == entry["id"]]
        keypoints = np.array([a["keypoints"] for a in people], dtype=np.float64).reshape(len(people), 17, 3)
        keypoints[keypoints[..., 2] == 0] = np.nan  # unlabelled: not drawn
        pasted = [a for a in people if a["synthesis"]["source"] == "donor"]
        image = load_image(json_path.parent / "images" / entry["file_name"])
        x0, y0, x1, y1 = _focus(people, image.shape[:2])
        keypoints[..., :2] -= (x0, y0)
        boxes = [[a["bbox"][0] - x0, a["bbox"][1] - y0, *a["bbox"][2:]] for a in pasted]
        depths = "+".join(a["synthesis"]["depth"] for a in pasted) or "none"
        occluded = int((keypoints[..., 2] == 1).sum())
        caption = f"{entry['file_name'][:-4]}: {depths}, {occluded} joints v=1"
        tiles.append(_tile(image[y0:y1, x0:x1], keypoints, boxes, caption))
    while len(tiles) < ROWS * COLUMNS:
        tiles.append(np.full((*CELL, 3), 255, dtype=np.uint8))
    rows = [np.concatenate(tiles[r * COLUMNS:(r + 1) * COLUMNS], axis=1) for r in range(ROWS)]
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-pasted", type=int, default=2)
    parser.add_argument("--base-ann", type=Path, help="base COCO keypoint file (default: coco_mini_train)")
    parser.add_argument("--base-images", type=Path, help="folder the base file's file_names are relative to")
    parser.add_argument("--no-nd-donors", action="store_true",
                        help="skip donor images under a NoDerivs licence (a published sheet is a derivative)")
    args = parser.parse_args(argv)
    coco = data_root() / "coco" / "coco_mini_train"
    exclude: list[int] = []
    if args.no_nd_donors:
        donors = json.loads((coco / "person_keypoints.json").read_text())
        no_derivs = {lic["id"] for lic in donors.get("licenses", []) if "NoDerivs" in lic["name"]}
        exclude = [im["id"] for im in donors["images"] if im.get("license") in no_derivs]
    base_ann = args.base_ann or coco / "person_keypoints.json"
    base_images = args.base_images or coco / "images"
    try:
        with tempfile.TemporaryDirectory() as temp:
            json_path = synthesize_crowds(base_ann, base_images, coco / "person_keypoints.json", coco / "images",
                                          temp, count=ROWS * COLUMNS, seed=args.seed, max_pasted=args.max_pasted,
                                          exclude_donor_image_ids=exclude)
            sheet = contact_sheet(json_path)
    except SDPoseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        print(f"error: could not write {args.out}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
