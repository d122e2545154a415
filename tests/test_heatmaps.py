"""Heatmap decoding: vectorised DARK / argmax against a per-joint mmpose-style reference, sub-pixel
accuracy on real targets, flip-back, and the inverse transform to image pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from sdpose_core.data import AugmentConfig, TopDownDataset, affine_points, get_affine_matrix
from sdpose_core.heatmaps import (
    decode_heatmaps,
    flip_average,
    flip_heatmaps_back,
    gaussian_targets,
    heatmap_peaks,
    heatmap_to_image_coords,
    max_locations,
)
from sdpose_core.keypoints import COCO17

SETS = {
    "coco_mini_train": ("coco/coco_mini_train/person_keypoints.json", "coco/coco_mini_train/images"),
    "mmpose_coco": ("coco/mmpose_coco/person_keypoints.json", "coco/mmpose_coco/images"),
    "mmpose_crowdpose": ("crowdpose/mmpose_crowdpose/crowdpose.json", "crowdpose/mmpose_crowdpose/images"),
    "exlpose_lowlight": ("crowdpose/exlpose_lowlight/crowdpose.json", "crowdpose/exlpose_lowlight/images"),
}


def reference_decode(heatmaps: np.ndarray, method: str, kernel: int = 11) -> np.ndarray:
    """Loop-per-joint decoding written from mmpose's description (the oracle for the vectorised code)."""
    n, k, h, w = heatmaps.shape
    out = np.zeros((n, k, 2))
    for i in range(n):
        for j in range(k):
            hm = heatmaps[i, j].astype(np.float64)
            y, x = np.unravel_index(np.argmax(hm), hm.shape)
            coord = np.array([x, y], dtype=np.float64) if hm.max() > 0 else np.array([-1.0, -1.0])
            px, py = int(coord[0]), int(coord[1])
            if method == "argmax":
                if 1 < px < w - 1 and 1 < py < h - 1:
                    coord += np.sign([hm[py, px + 1] - hm[py, px - 1], hm[py + 1, px] - hm[py - 1, px]]) * 0.25
            else:
                border = (kernel - 1) // 2
                padded = np.zeros((h + 2 * border, w + 2 * border))
                padded[border:-border, border:-border] = hm
                blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
                if blurred.max() != 0:
                    blurred *= hm.max() / blurred.max()
                lg = np.log(np.maximum(blurred, 1e-10))
                if 1 < px < w - 2 and 1 < py < h - 2:
                    dx = 0.5 * (lg[py, px + 1] - lg[py, px - 1])
                    dy = 0.5 * (lg[py + 1, px] - lg[py - 1, px])
                    dxx = 0.25 * (lg[py, px + 2] - 2 * lg[py, px] + lg[py, px - 2])
                    dxy = 0.25 * (lg[py + 1, px + 1] - lg[py - 1, px + 1] - lg[py + 1, px - 1] + lg[py - 1, px - 1])
                    dyy = 0.25 * (lg[py + 2, px] - 2 * lg[py, px] + lg[py - 2, px])
                    hessian = np.array([[dxx, dxy], [dxy, dyy]])
                    if np.linalg.det(hessian) != 0:
                        coord -= np.linalg.inv(hessian) @ np.array([dx, dy])
            out[i, j] = coord
    return out


def random_heatmaps(rng: np.random.Generator, n: int = 3, k: int = 6, h: int = 64, w: int = 48) -> np.ndarray:
    """Blobs of different widths, near borders too, plus noise (so maps are not perfect Gaussians)."""
    ys, xs = np.mgrid[0:h, 0:w]
    maps = rng.normal(0, 0.02, (n, k, h, w))
    for i in range(n):
        for j in range(k):
            cx, cy, sigma = rng.uniform(-2, w + 1), rng.uniform(-2, h + 1), rng.uniform(1.0, 4.0)
            maps[i, j] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return maps.astype(np.float32)


@pytest.mark.parametrize("method", ["dark", "argmax"])
def test_vectorised_decoding_matches_per_joint_reference(method):
    maps = random_heatmaps(np.random.default_rng(0))
    maps[0, 0] = 0.0  # an empty map: no maximum
    coords, scores = heatmap_peaks(maps, method=method)
    np.testing.assert_allclose(coords, reference_decode(maps, method), atol=1e-5)
    np.testing.assert_allclose(scores, maps.reshape(3, 6, -1).max(axis=2), rtol=1e-6)
    assert np.all(coords[0, 0] == -1) and scores[0, 0] == 0


def test_dark_is_sub_pixel_on_synthetic_targets():
    rng = np.random.default_rng(1)
    mu = np.c_[rng.uniform(4, 43, 2000), rng.uniform(4, 59, 2000)]  # >= 4 px from every border
    target, weight = gaussian_targets(mu * 4.0, np.ones(len(mu)), (256, 192), (64, 48))
    assert weight.min() == 1
    dark, _ = heatmap_peaks(target[None], "dark")
    plain, _ = heatmap_peaks(target[None], "argmax")
    dark_err = np.linalg.norm(dark[0] - mu, axis=1)
    plain_err = np.linalg.norm(plain[0] - mu, axis=1)
    assert dark_err.max() < 0.05
    assert plain_err.mean() > 0.1 and plain_err.max() < 0.25 * np.sqrt(2) + 0.01  # quarter offset is coarse


@pytest.mark.parametrize("name", list(SETS))
def test_dark_recovers_real_keypoints_from_targets(shared_data, name):
    ann, images = SETS[name]
    dataset = TopDownDataset(shared_data / ann, shared_data / images, train=False)
    checked = 0
    for index in range(len(dataset)):
        item = dataset[index]
        meta = item["meta"]
        keypoints = dataset.samples.keypoints[index]
        mu = affine_points(keypoints[:, :2], get_affine_matrix(meta["center"], meta["scale"], 0, (256, 192))) / 4
        peaks, _ = heatmap_peaks(item["target"][None].numpy(), "dark")
        interior = (keypoints[:, 2] > 0) & np.all((mu >= 4) & (mu <= np.array([47, 63]) - 4), axis=1)
        np.testing.assert_array_less(np.linalg.norm(peaks[0] - mu, axis=1)[interior], 0.05)
        checked += int(interior.sum())
        # in image pixels too: heatmap px -> image px multiplies by scale / 48
        decoded = decode_heatmaps(item["target"][None], meta["center"][None], meta["scale"][None])[0]
        limit = 0.05 * meta["scale"][0] / 48
        np.testing.assert_array_less(np.linalg.norm(decoded[:, :2] - keypoints[:, :2], axis=1)[interior], limit)
        # score = the sampled maximum: at most half a pixel diagonal from the true centre
        assert np.all(decoded[interior, 2] >= np.exp(-0.5 / 8) - 1e-6) and np.all(decoded[:, 2] <= 1.0)
    assert checked >= 10


def test_heatmap_to_image_coords_inverts_the_crop():
    rng = np.random.default_rng(2)
    centers = rng.uniform(50, 600, (5, 2))
    scales = rng.uniform(40, 400, (5, 1)) * np.array([0.75, 1.0])
    points = centers[:, None, :] + rng.uniform(-0.5, 0.5, (5, 17, 2)) * scales[:, None, :]
    for image_size, heatmap_size in (((256, 192), (64, 48)), ((192, 144), (48, 36))):
        stride = image_size[1] / heatmap_size[1]
        on_heatmap = np.stack([affine_points(points[i], get_affine_matrix(centers[i], scales[i], 0, image_size))
                               for i in range(5)]) / stride
        back = heatmap_to_image_coords(on_heatmap, centers, scales, heatmap_size)
        np.testing.assert_allclose(back, points, atol=1e-9)


def test_decode_accepts_tensors_and_checks_arguments():
    maps = random_heatmaps(np.random.default_rng(3), n=2, k=4)
    centers, scales = np.array([[100.0, 120.0], [300.0, 200.0]]), np.array([[150.0, 200.0], [75.0, 100.0]])
    from_numpy = decode_heatmaps(maps, centers, scales)
    from_torch = decode_heatmaps(torch.from_numpy(maps), centers, scales)
    np.testing.assert_allclose(from_numpy, from_torch)
    assert from_numpy.shape == (2, 4, 3) and np.isfinite(from_numpy).all()
    with pytest.raises(ValueError, match="unknown decode method"):
        decode_heatmaps(maps, centers, scales, method="udp")
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        decode_heatmaps(maps[0], centers, scales)
    # an all-zero map decodes to heatmap (-1, -1) with score 0 and stays finite in image pixels
    zeros = decode_heatmaps(np.zeros((1, 2, 64, 48), np.float32), centers[:1], scales[:1])
    np.testing.assert_allclose(zeros[0, :, :2], heatmap_to_image_coords(-np.ones((1, 2, 2)), centers[:1],
                                                                       scales[:1], (64, 48))[0])
    assert np.all(zeros[..., 2] == 0)


def test_flip_heatmaps_back_numpy_and_torch_agree():
    maps = random_heatmaps(np.random.default_rng(4), n=2, k=17)
    index = COCO17.flip_index()
    back_np = flip_heatmaps_back(maps, index)
    back_t = flip_heatmaps_back(torch.from_numpy(maps), torch.as_tensor(index))
    assert isinstance(back_t, torch.Tensor)
    np.testing.assert_array_equal(back_np, back_t.numpy())
    # without the shift it is an involution; left and right channels trade places
    unshifted = flip_heatmaps_back(maps, index, shift=False)
    np.testing.assert_array_equal(flip_heatmaps_back(unshifted, index, shift=False), maps)
    np.testing.assert_array_equal(unshifted[:, 5], maps[:, 6, :, ::-1])
    np.testing.assert_array_equal(unshifted[:, 0], maps[:, 0, :, ::-1])
    # the shift moves everything one column right and repeats the first column
    np.testing.assert_array_equal(back_np[..., 1:], unshifted[..., :-1])
    np.testing.assert_array_equal(back_np[..., 0], unshifted[..., 0])


def test_flip_average_is_one_rule_for_numpy_and_torch():
    """The flip test's average (every flip test in the project calls it): numpy and torch give the same maps,
    which are the mean of the plain maps and the mirrored ones put back."""
    rng = np.random.default_rng(3)
    plain, mirrored = rng.random((2, 2, 17, 16, 12)).astype(np.float32)
    index = COCO17.flip_index()
    averaged = flip_average(plain, mirrored, index)
    assert isinstance(averaged, np.ndarray)
    np.testing.assert_array_equal(averaged, (plain + flip_heatmaps_back(mirrored, index)) * 0.5)
    on_torch = flip_average(torch.from_numpy(plain), torch.from_numpy(mirrored), torch.as_tensor(index))
    assert isinstance(on_torch, torch.Tensor)
    np.testing.assert_array_equal(on_torch.numpy(), averaged)


def test_flip_back_undoes_a_real_flipped_crop(shared_data):
    """The target of the mirrored crop, flipped back (with the one-pixel shift), is the unflipped target."""
    ann, images = SETS["coco_mini_train"]
    flip_only = AugmentConfig(flip_prob=1.0, shift_prob=0.0, half_body_prob=0.0, scale_factor=0.0,
                              rotation_factor=0.0, rotation_prob=0.0)
    plain = TopDownDataset(shared_data / ann, shared_data / images, train=True, augment=AugmentConfig.disabled())
    flipped = TopDownDataset(shared_data / ann, shared_data / images, train=True, augment=flip_only)
    for index in range(0, len(plain), 9):
        expected = plain[index]["target"].numpy()
        back = flip_heatmaps_back(flipped[index]["target"][None].numpy(), COCO17.flip_index())[0]
        np.testing.assert_allclose(back[..., 1:], expected[..., 1:], atol=1e-6)
        unshifted = flip_heatmaps_back(flipped[index]["target"][None].numpy(), COCO17.flip_index(), shift=False)
        if expected.max() > 0:
            assert np.abs(unshifted[0, ..., :-1] - expected[..., 1:]).max() < 1e-6


def test_max_locations_marks_non_positive_maps():
    maps = np.full((1, 2, 8, 8), -1.0)
    maps[0, 1, 3, 5] = 2.0
    coords, scores = max_locations(maps)
    np.testing.assert_array_equal(coords[0], [[-1, -1], [5, 3]])
    np.testing.assert_array_equal(scores[0], [-1.0, 2.0])


def test_dark_never_moves_a_keypoint_more_than_one_pixel_from_the_maximum() -> None:
    # nearly flat, noisy maps (what an untrained model or an occluded joint gives): the Newton step
    # must not fly off; it stays within one heatmap pixel of the integer maximum
    rng = np.random.default_rng(0)
    maps = 1e-3 + 1e-7 * rng.standard_normal((4, 17, 64, 48))
    coarse, _ = heatmap_peaks(maps, method="argmax")
    fine, _ = heatmap_peaks(maps, method="dark")
    integer = max_locations(maps)[0]
    assert np.abs(fine - integer).max() <= 1.0 + 1e-9
    assert np.abs(coarse - integer).max() <= 0.25 + 1e-9
