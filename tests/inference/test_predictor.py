"""Predictor: per-cycle outputs from one batched forward, crop -> decode -> image geometry on real COCO
images, dynamic cycles, flip test, and bad input (corrupt files, odd image types, bad boxes, huge images).

The geometry is proven model-free: a test double returns the Gaussian target heatmaps of the GT joints in
the Predictor's own crops, and the Predictor must give the GT joints back in image pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from sdpose_core.data import TopDownDataset, affine_points, clip_box_xywh
from sdpose_core.errors import ConfigError, DataError
from sdpose_core.heatmaps import flip_heatmaps_back, gaussian_targets
from sdpose_core.inference.predictor import Predictor, load_image
from sdpose_core.keypoints import COCO17
from sdpose_core.models import CycleOutput, build_model, get_config

MINI_TRAIN = "coco/coco_mini_train"
CROWDED_IMAGE = "000000370162.jpg"  # 11 annotated people
MMPOSE_COCO = "coco/mmpose_coco"
TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4)


class TargetHeatmapModel(nn.Module):
    """Test double: yields preset heatmaps for cycles 1..N whatever the pixels, and records each batch."""

    def __init__(self, heatmaps_per_cycle: list[torch.Tensor]) -> None:
        super().__init__()
        self.config = get_config("sdpose-t", cycles=len(heatmaps_per_cycle))
        self.heatmaps_per_cycle = heatmaps_per_cycle
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the module a device
        self.batches: list[tuple[int, ...]] = []

    def iter_cycles(self, images: torch.Tensor, cycles: int | None = None):
        self.batches.append(tuple(images.shape))
        for heatmaps in self.heatmaps_per_cycle[: cycles or self.config.cycles]:
            batch = heatmaps.shape[0]
            yield CycleOutput(heatmaps, torch.zeros(batch, 17, 1), torch.zeros(batch, 1, 1))


def gt_people(root: Path, split: str, file_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image RGB, GT boxes clipped as mmpose does (N, 4), GT keypoints (N, 17, 3)) of one image."""
    data = json.loads((root / split / "person_keypoints.json").read_text())
    image_info = next(i for i in data["images"] if i["file_name"] == file_name)
    boxes, keypoints = [], []
    for ann in data["annotations"]:
        if ann["image_id"] != image_info["id"] or ann["iscrowd"] or ann["num_keypoints"] == 0:
            continue
        boxes.append(clip_box_xywh(np.asarray(ann["bbox"], float), image_info["width"], image_info["height"]))
        keypoints.append(np.asarray(ann["keypoints"], float).reshape(17, 3))
    return load_image(root / split / "images" / file_name), np.array(boxes), np.array(keypoints)


def stub_targets(predictor: Predictor, image: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                 crop_shift: tuple[float, float] = (0.0, 0.0)) -> tuple[torch.Tensor, np.ndarray]:
    """GT target heatmaps in the Predictor's crops (joints moved by `crop_shift` crop pixels) and a mask of
    the joints a decoder can recover exactly (visible, peak at least 2 px inside the heatmap)."""
    crops = predictor.crop_people(image, boxes)
    maps, usable = [], []
    for person in range(len(crops)):
        in_crop = affine_points(keypoints[person, :, :2], crops.matrices[person]) + np.asarray(crop_shift)
        target, _ = gaussian_targets(in_crop, keypoints[person, :, 2], (256, 192), (64, 48), sigma=2.0)
        maps.append(target)
        peak = in_crop / 4.0
        usable.append((keypoints[person, :, 2] > 0) & (peak[:, 0] > 2) & (peak[:, 0] < 45) & (peak[:, 1] > 2)
                      & (peak[:, 1] < 61))
    return torch.from_numpy(np.stack(maps)), np.array(usable)


@pytest.fixture(scope="module")
def crowded(shared_data: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return gt_people(shared_data, MINI_TRAIN, CROWDED_IMAGE)


def image_dependent(model: nn.Module) -> nn.Module:
    """Untrained SDPose with the official init (stem convs N(0, 0.001)) hardly sees the image: every crop
    gets the same heatmaps to 1e-7, which would hide mix-ups between people. PyTorch's default conv init
    makes the outputs depend on the crop (heatmaps differ between people by ~1e-2)."""
    with torch.no_grad():
        for module in model.stem.modules():
            if isinstance(module, nn.Conv2d):
                module.reset_parameters()
    return model.eval()


@pytest.fixture(scope="module")
def sdpose_t() -> nn.Module:
    torch.manual_seed(0)
    return image_dependent(build_model("sdpose-t"))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    """A small SDPose (64x48 input, 16x12 heatmaps) for the tests where model size does not matter."""
    torch.manual_seed(0)
    return image_dependent(build_model("sdpose-t", **TINY))


# --- geometry, model-free ----------------------------------------------------------------------------

def test_gt_heatmaps_round_trip_to_gt_keypoints_every_cycle(crowded) -> None:
    image, boxes, keypoints = crowded
    probe = Predictor(model=TargetHeatmapModel([]), detector=None)
    shifts = [(0.0, 0.0), (4.0, -3.0), (-6.5, 2.5)]  # crop pixels, one per cycle
    maps, usable = zip(*(stub_targets(probe, image, boxes, keypoints, s) for s in shifts), strict=True)
    model = TargetHeatmapModel(list(maps))
    result = Predictor(model=model, detector=None).predict(image, boxes=boxes)

    assert model.batches == [(len(boxes), 3, 256, 192)]  # all people, one batched forward
    assert len(result) == len(boxes) == 11 and result.cycles_used == [3] * 11
    assert not result.weights_info.trained and result.weights_info.source == "module"
    for person, gt in zip(result.people, keypoints, strict=True):
        zoom = person.crop_matrix[0, 0]
        for cycle, shift in enumerate(shifts, start=1):
            expected = gt[:, :2] + np.asarray(shift) / zoom  # the shift, mapped back to image pixels
            mask = usable[cycle - 1][person.source_index]
            error = np.abs(person.keypoints_at(cycle)[mask, :2] - expected[mask])
            assert mask.sum() >= 3 and error.max() < 1.0, (cycle, error.max())
            # score = the map's value at the integer peak: exp(-d^2 / 8) with d <= 0.71 px from the centre
            assert np.all(person.keypoints_at(cycle)[mask, 2] > 0.93)
    assert sum(u.sum() for u in usable[:1]) > 80  # the check covered most joints


def test_dynamic_cycles_stop_each_person_once_two_cycles_agree(crowded) -> None:
    image, boxes, keypoints = crowded
    boxes, keypoints = boxes[:3], keypoints[:3]
    probe = Predictor(model=TargetHeatmapModel([]), detector=None)
    still, _ = stub_targets(probe, image, boxes, keypoints)
    moved, _ = stub_targets(probe, image, boxes, keypoints, (8.0, 0.0))  # 2 heatmap px
    # person 0 never moves; person 1 jumps every cycle; person 2 moves once, then stays
    cycle_maps = [still.clone(), still.clone(), still.clone(), still.clone()]
    cycle_maps[1][1], cycle_maps[3][1] = moved[1], moved[1]
    for c in (1, 2, 3):
        cycle_maps[c][2] = moved[2]
    model = TargetHeatmapModel(cycle_maps)
    result = Predictor(model=model, detector=None).predict(image, boxes=boxes, dynamic=True, dynamic_tolerance=0.5)
    assert result.cycles_used == [2, 4, 3]
    assert [p.converged for p in result.people] == [True, False, True]
    np.testing.assert_allclose(result.people[1].cycle_shifts, [2.0, 2.0, 2.0], atol=0.02)
    assert result.people[2].cycle_shifts[0] == pytest.approx(2.0, abs=0.02)
    assert result.people[2].cycle_shifts[1] < 1e-6
    assert result.people[0].final_cycle == 2
    np.testing.assert_array_equal(result.people[0].keypoints, result.people[0].cycle_keypoints[1])
    # the same maps with fixed cycles: every person runs all four, converged is not reported
    fixed = Predictor(model=model, detector=None).predict(image, boxes=boxes, cycles=4)
    assert fixed.cycles_used == [4, 4, 4] and fixed.people[0].converged is None and not fixed.dynamic


# --- the real model ----------------------------------------------------------------------------------

def test_real_model_every_cycle_and_single_pass_equals_cycle_one(crowded, sdpose_t) -> None:
    image, boxes, _ = crowded
    predictor = Predictor(model=sdpose_t, detector=None)
    result = predictor.predict(image, boxes=boxes)
    assert result.model_name == "sdpose-t" and result.cycles == 3 and result.layout is COCO17
    assert len(result.timings.cycle_ms) == 3 and result.timings.cycle_batch_sizes == [11, 11, 11]
    assert result.timings.pose_ms > 0 and result.timings.decode_ms > 0 and result.timings.detector_ms is None
    for person in result.people:
        assert person.cycles_used == 3 and len(person.cycle_shifts) == 2
        for heatmaps, kps in zip(person.cycle_heatmaps, person.cycle_keypoints, strict=True):
            assert heatmaps.shape == (17, 64, 48) and heatmaps.dtype == np.float32 and kps.shape == (17, 3)
            # decoded peaks lie inside the crop: the box padded by 1.25 and fixed to 3:4
            low, high = person.center - person.scale / 2, person.center + person.scale / 2
            assert np.all(kps[:, :2] >= low - 1e-6) and np.all(kps[:, :2] <= high + 1e-6)
        x, y, w, h = person.box_xywh
        assert np.all(np.abs(kps[:, 0] - (x + w / 2)) <= 0.65 * person.scale[0])
    single = predictor.predict(image, boxes=boxes, cycles=1)
    assert single.cycles_used == [1] * 11 and len(single.timings.cycle_ms) == 1
    for one, full in zip(single.people, result.people, strict=True):
        np.testing.assert_allclose(one.cycle_heatmaps[0], full.cycle_heatmaps[0], atol=1e-5)
        np.testing.assert_allclose(one.keypoints, full.cycle_keypoints[0], atol=1e-3)


@pytest.mark.parametrize("flip", [False, True])
def test_predictor_matches_dataset_inference(shared_data: Path, tiny, flip: bool) -> None:
    """Same GT boxes through the Predictor and through TopDownDataset + collect_predictions; with the flip
    test too, which both take from `heatmaps.flip_average`."""
    from sdpose_core.evaluation.loop import collect_predictions

    root = shared_data / MMPOSE_COCO
    dataset = TopDownDataset(root / "person_keypoints.json", root / "images", train=False, image_size=(64, 48),
                             heatmap_size=(16, 12))
    # argmax decoding: DARK on the flat heatmaps of untrained weights can amplify 1e-7 differences
    # between batch compositions into pixels; the heatmaps -> image mapping is the same either way
    reference = collect_predictions(tiny, dataset, cycles=3, flip=flip, batch_size=16, decode="argmax")
    predictor = Predictor(model=tiny, detector=None, antialias=False, decode="argmax")
    files = {int(i): f for i, f in zip(dataset.image_ids, dataset.image_files, strict=True)}
    ann_ids = dataset.samples.ann_id[reference.indices]
    for image_id in np.unique(reference.image_ids):
        rows = np.flatnonzero(reference.image_ids == image_id)
        info = dataset.coco.imgs[int(image_id)]
        boxes = np.array([clip_box_xywh(np.asarray(dataset.coco.anns[int(a)]["bbox"], float), info["width"],
                                        info["height"]) for a in ann_ids[rows]])
        result = predictor.predict(files[int(image_id)], boxes=boxes, flip=flip)
        np.testing.assert_allclose(np.stack([p.center for p in result.people]), reference.centers[rows], atol=1e-6)
        for cycle in (1, 2, 3):
            np.testing.assert_allclose(result.keypoints(cycle), reference.keypoints[cycle][rows], atol=2e-3)


@pytest.fixture(scope="module")
def sensitive_tiny() -> nn.Module:
    """`tiny` with amplified patch embeddings: its heatmap PEAKS (not only values) move from person to
    person, so people's cycle-to-cycle shifts differ and a tolerance can split them."""
    torch.manual_seed(0)
    model = image_dependent(build_model("sdpose-t", **TINY))
    with torch.no_grad():
        model.patch_embed.proj.weight.mul_(30.0)
    return model


def splitting_tolerance(shifts: np.ndarray) -> float:
    """A tolerance in the widest gap between the people's cycle 1 -> 2 shifts: some stop, some go on."""
    ordered = np.sort(shifts)
    gap = int(np.argmax(np.diff(ordered)))
    assert ordered[gap + 1] - ordered[gap] > 1e-3, f"the people's shifts do not differ: {ordered}"
    return float(ordered[gap] + ordered[gap + 1]) / 2


def test_dynamic_drops_settled_people_from_the_token_batch(crowded, sensitive_tiny) -> None:
    image, boxes, _ = crowded
    predictor = Predictor(model=sensitive_tiny, detector=None)
    count = len(boxes)
    fixed = predictor.predict(image, boxes=boxes)
    never = predictor.predict(image, boxes=boxes, dynamic=True, dynamic_tolerance=0.0)
    always = predictor.predict(image, boxes=boxes, dynamic=True, dynamic_tolerance=float("inf"))
    assert never.cycles_used == [3] * count and never.timings.cycle_batch_sizes == [count] * 3
    assert always.cycles_used == [2] * count and always.timings.cycle_batch_sizes == [count] * 2
    assert [p.converged for p in never.people] == [False] * count
    assert [p.converged for p in always.people] == [True] * count
    first_shifts = np.array([p.cycle_shifts[0] for p in fixed.people])
    tolerance = splitting_tolerance(first_shifts)
    mixed = predictor.predict(image, boxes=boxes, dynamic=True, dynamic_tolerance=tolerance)
    expected_used = np.where(first_shifts < tolerance, 2, 3)
    assert mixed.cycles_used == expected_used.tolist()
    assert mixed.timings.cycle_batch_sizes == [count, count, int((expected_used == 3).sum())]
    for result in (never, always, mixed):
        for person, reference in zip(result.people, fixed.people, strict=True):
            for cycle in range(1, person.cycles_used + 1):
                # people's heatmaps differ by ~1e-2 here, so a row mix-up cannot pass
                np.testing.assert_allclose(person.cycle_heatmaps[cycle - 1], reference.cycle_heatmaps[cycle - 1],
                                           atol=1e-6)


@pytest.mark.parametrize("flip", [False, True])
def test_token_stepper_keeps_the_right_rows(crowded, tiny, flip: bool) -> None:
    """Dropping people between cycles (with flip: each crop and its mirror together) keeps every
    remaining person's outputs exactly those of the full batch."""
    from sdpose_core.inference.cycles import IterCyclesStepper, TokenStepper

    image, boxes, _ = crowded
    images = Predictor(model=tiny, detector=None).crop_people(image, boxes).images
    flip_index = COCO17.flip_index() if flip else None
    with torch.inference_mode():
        full = IterCyclesStepper(tiny, images, 4, flip_index)
        reference = [full.step() for _ in range(4)]
        stepper = TokenStepper(tiny, images, flip_index)
        people = np.arange(len(boxes))
        for cycle, keep in enumerate([None, [1, 3, 4, 6, 7, 8, 10], [0, 2, 3, 5, 6], None]):
            maps = stepper.step()
            assert np.abs(maps - maps.mean(axis=0)).max() > 1e-3  # people differ: a mix-up would show
            np.testing.assert_allclose(maps, reference[cycle][people], atol=1e-6)
            if keep is not None:
                mask = np.isin(np.arange(len(people)), keep)
                stepper.keep(mask)
                people = people[mask]
    assert len(people) == 5


def test_flip_test_averages_the_mirrored_crop(crowded, tiny) -> None:
    image, boxes, _ = crowded
    predictor = Predictor(model=tiny, detector=None)
    result = predictor.predict(image, boxes=boxes[:2], cycles=2, flip=True)
    crops = predictor.crop_people(image, boxes[:2]).images
    with torch.inference_mode():
        plain = tiny(crops, cycles=2)
        mirrored = tiny(torch.flip(crops, dims=[3]), cycles=2)
    for cycle in (0, 1):
        back = flip_heatmaps_back(mirrored[cycle].heatmaps, COCO17.flip_index())
        expected = (plain[cycle].heatmaps + back) / 2
        for row, person in enumerate(result.people):
            np.testing.assert_allclose(person.cycle_heatmaps[cycle], expected[row].numpy(), atol=1e-5)
    assert result.flip


# --- bad input ---------------------------------------------------------------------------------------

def test_load_image_names_bad_files(tmp_path: Path, shared_data: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((shared_data / MINI_TRAIN / "images" / CROWDED_IMAGE).read_bytes()[:200])
    for path, message in ((text, "cannot decode"), (empty, "empty"), (tmp_path / "missing.jpg", "does not exist"),
                          (truncated, "cannot decode")):
        with pytest.raises(DataError, match=message) as caught:
            load_image(path)
        assert str(path) in str(caught.value)
    predictor = Predictor(model=TargetHeatmapModel([]), detector=None)
    with pytest.raises(DataError, match="notes.jpg"):
        predictor.predict(text, boxes=[[0, 0, 10, 10]])
    for bad in (np.zeros((0, 0, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.int32), None,
                np.full((4, 4, 3), np.nan, np.float32)):
        with pytest.raises(DataError):
            predictor.predict(bad, boxes=[[0, 0, 2, 2]])


def test_grayscale_rgba_16bit_and_float_images_are_converted(crowded, tiny) -> None:
    image, boxes, _ = crowded
    predictor = Predictor(model=tiny, detector=None)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    as_rgb = predictor.predict(np.repeat(gray[..., None], 3, axis=2), boxes=boxes[:2], cycles=1).keypoints()
    np.testing.assert_array_equal(predictor.predict(gray, boxes=boxes[:2], cycles=1).keypoints(), as_rgb)
    np.testing.assert_array_equal(predictor.predict(gray[..., None], boxes=boxes[:2], cycles=1).keypoints(), as_rgb)
    reference = predictor.predict(image, boxes=boxes[:2], cycles=1).keypoints()
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 128, np.uint8)], axis=2)
    sixteen = image.astype(np.uint16) * 257  # full 16-bit range; the top byte is the 8-bit image
    as_float = image.astype(np.float32) / 255.0
    for variant in (rgba, sixteen, as_float):
        np.testing.assert_allclose(predictor.predict(variant, boxes=boxes[:2], cycles=1).keypoints(), reference,
                                   atol=1e-4)


def test_bad_boxes_are_clipped_or_dropped_with_notes(crowded, tiny) -> None:
    image, boxes, _ = crowded
    height, width = image.shape[:2]
    predictor = Predictor(model=tiny, detector=None)
    given = np.array([
        boxes[0],                         # fine
        [-50, -40, 200, 300],             # reaches outside: clipped
        [width + 10, 20, 50, 80],         # entirely outside: dropped
        [100, 100, 0, 50],                # zero width: dropped
        [np.nan, 0, 10, 10],              # NaN: dropped
        [width - 30, height - 30, 400, 400],  # mostly outside: clipped to 30x30
    ])
    result = predictor.predict(image, boxes=given, cycles=1)
    assert [p.source_index for p in result.people] == [0, 1, 5]
    np.testing.assert_allclose(result.people[1].box_xywh, [0, 0, 150, 260])
    np.testing.assert_allclose(result.people[2].box_xywh, [width - 30, height - 30, 30, 30])
    assert sum("dropped" in n for n in result.notes) == 3 and sum("clipped" in n for n in result.notes) == 2
    nothing = predictor.predict(image, boxes=given[2:5])
    assert len(nothing) == 0 and nothing.people == [] and len(nothing.notes) == 3
    assert nothing.keypoints().shape == (0, 17, 3) and nothing.to_coco_results(1) == []
    assert len(predictor.predict(image, boxes=np.zeros((0, 4)))) == 0
    with pytest.raises(DataError, match="boxes must be"):
        predictor.predict(image, boxes=np.zeros((2, 3)))


def test_detector_options_and_errors(crowded, tiny) -> None:
    image, boxes, _ = crowded
    with pytest.raises(ConfigError, match="no boxes given"):
        Predictor(model=tiny, detector=None).predict(image)
    with pytest.raises(ConfigError, match="unknown detector"):
        Predictor(model=tiny, detector="yolo")
    hooked = Predictor(model=tiny, detector=lambda img: (boxes[:3], np.array([0.9, 0.8, 0.2])), max_persons=2)
    result = hooked.predict(image, cycles=1)  # 0.2 is under the detector threshold (0.3); 2 kept at most
    assert len(result) == 2 and [p.box_score for p in result.people] == [0.9, 0.8]
    assert result.timings.detector_ms is not None
    whole = Predictor(model=tiny, detector="whole-image").predict(image, cycles=1)
    np.testing.assert_allclose(whole.people[0].box_xywh, [0, 0, image.shape[1], image.shape[0]])


def test_ssdlite_on_a_blank_image_finds_nobody(tiny) -> None:
    from sdpose_core.detection import INSTALL_HINT, find_frozen_graph

    if find_frozen_graph() is None:
        pytest.skip(f"person detector weights not installed ({INSTALL_HINT})")
    result = Predictor(model=tiny).predict(np.full((480, 640, 3), 127, np.uint8))
    assert len(result) == 0 and "no people found" in result.notes and result.timings.detector_ms > 0


def test_huge_image_keypoints_in_full_resolution(crowded, tiny) -> None:
    image, boxes, keypoints = crowded
    factor = 6000 / image.shape[1]  # 640x400 -> 6000x3750, on a 6000x4000 canvas
    huge = np.zeros((4000, 6000, 3), np.uint8)
    huge[:3750] = cv2.resize(image, (6000, 3750), interpolation=cv2.INTER_LINEAR)
    huge_boxes = np.concatenate([(boxes[:, :2] + 0.5) * factor - 0.5, boxes[:, 2:] * factor], axis=1)
    huge_kps = keypoints.copy()
    huge_kps[..., :2] = (keypoints[..., :2] + 0.5) * factor - 0.5  # cv2.resize pixel-centre mapping
    probe = Predictor(model=TargetHeatmapModel([]), detector=None)
    maps, usable = stub_targets(probe, huge, huge_boxes, huge_kps)
    result = Predictor(model=TargetHeatmapModel([maps]), detector=None).predict(huge, boxes=huge_boxes)
    assert result.image_size == (4000, 6000) and len(result) == 11
    for person, gt, mask in zip(result.people, huge_kps, usable, strict=True):
        heatmap_px = person.scale[0] / 48  # image pixels per heatmap pixel (9 to 90 here)
        assert heatmap_px > 5
        assert np.abs(person.keypoints[mask, :2] - gt[mask, :2]).max() < 0.05 * heatmap_px
    # the crops equal those of the 640x400 original (the upscaled image holds nothing finer)
    small = probe.crop_people(image, boxes).crops_rgb.astype(float)
    large = probe.crop_people(huge, huge_boxes).crops_rgb.astype(float)
    assert np.abs(large - small).mean() < 2.0
    # a real model and a whole-image box: full-resolution coordinates, not the detector's 1280 px
    whole = Predictor(model=tiny, detector="whole-image").predict(huge, cycles=1)
    assert whole.people[0].keypoints[:, 0].max() > 1280 and whole.people[0].scale[0] > 6000


def test_crops_that_shrink_a_lot_are_antialiased_without_moving() -> None:
    """A 1-pixel checkerboard shrunk 12.5x turns grey instead of into moire; a disc stays where it was."""
    from sdpose_core.data import get_affine_matrix
    from sdpose_core.inference.crops import warp_person_crop

    size = (256, 192)
    matrix = get_affine_matrix(np.array([3000.3, 2000.7]), np.array([2400.0, 3200.0]), 0.0, size)
    checker = ((np.indices((4000, 6000)).sum(axis=0) % 2) * 255).astype(np.uint8)
    checker = np.repeat(checker[..., None], 3, axis=2)
    smooth = warp_person_crop(checker, matrix, size)[20:-20, 20:-20].astype(float)
    aliased = warp_person_crop(checker, matrix, size, antialias=False)[20:-20, 20:-20].astype(float)
    assert abs(smooth.mean() - 127.5) < 2 and smooth.std() < 3 and aliased.std() > 20
    disc = np.zeros((4000, 6000, 3), np.uint8)
    cv2.circle(disc, (2700, 1600), 400, (255, 255, 255), -1, lineType=cv2.LINE_AA)
    def centroid(crop: np.ndarray) -> np.ndarray:
        weight = crop[..., 0].astype(float)
        ys, xs = np.indices(weight.shape)
        return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()
    expected = affine_points(np.array([2700.0, 1600.0]), matrix)
    for antialias in (True, False):
        found = centroid(warp_person_crop(disc, matrix, size, antialias))
        assert np.abs(found - expected).max() < 0.05, (antialias, found, expected)


def test_onnx_backend_matches_torch(tmp_path: Path, crowded, tiny) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    export = pytest.importorskip("sdpose_core.deploy.export", reason="sdpose_core.deploy.export (ONNX export) is missing")
    image, boxes, _ = crowded
    path = export.export_onnx(tiny, tmp_path / "tiny.onnx", cycles=3, check=False,
                              weights_info="UNTRAINED: random test weights").path
    onnx_predictor = Predictor(weights=path, backend="onnx", detector=None)
    assert onnx_predictor.config.image_size == (64, 48) and not onnx_predictor.weights_info.trained
    torch_predictor = Predictor(model=tiny, detector=None)
    for options in ({}, {"flip": True}, {"cycles": 1}):
        onnx_result = onnx_predictor.predict(image, boxes=boxes, **options)
        torch_result = torch_predictor.predict(image, boxes=boxes, **options)
        assert onnx_result.backend == "onnx" and onnx_result.cycles_used == torch_result.cycles_used
        assert onnx_result.timings.cycle_ms == [] and onnx_result.timings.pose_ms > 0
        for onnx_person, torch_person in zip(onnx_result.people, torch_result.people, strict=True):
            for onnx_maps, torch_maps in zip(onnx_person.cycle_heatmaps, torch_person.cycle_heatmaps, strict=True):
                np.testing.assert_allclose(onnx_maps, torch_maps, atol=1e-4)
    dynamic = onnx_predictor.predict(image, boxes=boxes, dynamic=True, dynamic_tolerance=float("inf"))
    assert dynamic.cycles_used == [2] * len(boxes) and any("saves no compute" in n for n in dynamic.notes)
    single = export.export_onnx(tiny, tmp_path / "single.onnx", cycles=1, check=False).path
    single_predictor = Predictor(weights=single, backend="onnx", detector=None)
    assert single_predictor.predict(image, boxes=boxes[:1]).cycles_used == [1]
    assert single_predictor.weights_info.description.startswith("UNTRAINED or unknown")
    with pytest.raises(ConfigError, match="exported with 1 cycle"):
        single_predictor.predict(image, boxes=boxes[:1], cycles=2)


def test_predict_command_writes_every_cycle(tmp_path: Path, shared_data: Path, monkeypatch, capsys) -> None:
    from sdpose_core.cli.main import main

    monkeypatch.delenv("SDPOSE_WEIGHTS", raising=False)
    image = shared_data / MMPOSE_COCO / "images" / "000000000785.jpg"
    code = main(["predict", str(image), "--detector", "whole-image", "--cycles", "2", "--json",
                 "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    from sdpose_core.weights.load import EMBEDDED_DEFAULT_DIR

    # random weights are announced on every run; the embedded trained default is not a warning
    assert ("UNTRAINED" in capsys.readouterr().err) != (EMBEDDED_DEFAULT_DIR / "model.safetensors").is_file()
    drawn = [p for p in (tmp_path / "out").iterdir() if p.suffix in (".jpg", ".png")]
    assert len(drawn) == 1 and cv2.imread(str(drawn[0])).shape[:2] == cv2.imread(str(image)).shape[:2]
    assert (tmp_path / "out" / "predictions.json").is_file()
