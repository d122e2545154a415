"""The onnxruntime person detectors (RTMDet-nano, YOLOX-Nano): letterbox, decoding of the outputs as
../shared/detectors/README.md lays them out, part merging, the factory and its SSDLite fallback, the
download code (offline, on files the tests make and serve from 127.0.0.1), and real recall."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sdpose_core.detection import (
    RELEASES,
    DetectorRelease,
    RTMDetNano,
    YoloxNano,
    build_detector,
    download_detector,
    factory,
    find_detector_file,
    merge_parts,
)
from sdpose_core.detection.onnx_detectors import PAD_VALUE, decode_rtmdet, decode_yolox, letterbox, yolox_grid
from sdpose_core.detection.recall import box_reports, iou_xywh, load_people
from sdpose_core.errors import CheckpointError, ConfigError, DataError
from sdpose_core.media.images import load_image

onnx = pytest.importorskip("onnx", reason="the onnx package builds the test graphs")
from onnx import TensorProto, helper  # noqa: E402

COCO_SPLITS = ("coco/coco_mini_train", "coco/mmpose_coco")
SHARED_README = Path(__file__).resolve().parents[3] / "shared" / "detectors" / "README.md"


def shared_file(name: str) -> Path:
    path = find_detector_file(name)
    if path is None:
        pytest.skip(f"{RELEASES[name].file_name} not found in {factory.detector_folders()} (set SDPOSE_DETECTORS)")
    return path


# --- tiny graphs with the real models' input / output layout ------------------------------------------

def _constant_graph(input_name: str, input_shape: list, outputs: dict[str, np.ndarray]) -> bytes:
    """A graph whose outputs are the given arrays (plus 0 x the input's mean, so the input is used)."""
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])]
    infos = []
    for name, value in outputs.items():
        inits.append(helper.make_tensor(f"{name}_value", TensorProto.FLOAT, value.shape, value.astype(np.float32).ravel()))
        if value.dtype == np.int64:
            nodes += [helper.make_node("Add", [f"{name}_value", "nothing"], [f"{name}_float"]),
                      helper.make_node("Cast", [f"{name}_float"], [name], to=TensorProto.INT64)]
            infos.append(helper.make_tensor_value_info(name, TensorProto.INT64, list(value.shape)))
        else:
            nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
            infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "test", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
                              infos, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


RTMDET_DETS = np.array([[[20, 30, 120, 230, 0.9], [300, 10, 310, 20, 0.2]]], dtype=np.float32)  # letterbox px


def rtmdet_graph(size: int | str = "height") -> bytes:
    side = size if isinstance(size, int) else "height"
    return _constant_graph("input", ["batch", 3, side, side if isinstance(size, int) else "width"],
                           {"dets": RTMDET_DETS, "labels": np.array([[0, 0]], dtype=np.int64)})


def yolox_rows() -> np.ndarray:
    rows = np.zeros((1, 3549, 85), dtype=np.float32)
    cell = 52 * 52 + 5 * 26 + 3  # stride-16 map, cell gx = 3, gy = 5
    rows[0, cell, :6] = [0.5, 0.25, np.log(2.0), np.log(4.0), 0.9, 0.8]  # person score 0.72
    rows[0, 7, :5] = [0, 0, 0, 0, 0.95]
    rows[0, 7, 5 + 2] = 0.99  # a confident car, not a person (person prob 0)
    return rows


def yolox_graph() -> bytes:
    return _constant_graph("images", [1, 3, 416, 416], {"output": yolox_rows()})


# --- letterbox and decoding ---------------------------------------------------------------------------

def test_letterbox_pastes_bgr_at_the_top_left_on_114() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[..., 0] = 255  # pure red in RGB
    canvas, ratio = letterbox(image, 320)
    assert ratio == pytest.approx(1.6) and canvas.shape == (320, 320, 3)
    np.testing.assert_array_equal(canvas[:160, :320].reshape(-1, 3).mean(axis=0), [0, 0, 255])  # BGR: red last
    assert (canvas[160:] == PAD_VALUE).all()


def test_rtmdet_decoding_divides_by_the_letterbox_scale() -> None:
    boxes, scores = decode_rtmdet(RTMDET_DETS, np.array([[0, 0]]), ratio=0.5)
    np.testing.assert_allclose(boxes, [[40, 60, 200, 400], [600, 20, 20, 20]])
    np.testing.assert_allclose(scores, [0.9, 0.2], rtol=1e-6)
    empty = decode_rtmdet(np.zeros((1, 0, 5)), np.zeros((1, 0), np.int64), ratio=1.0)
    assert empty[0].shape == (0, 4) and empty[1].shape == (0,)
    with pytest.raises(DataError, match="labels"):
        decode_rtmdet(RTMDET_DETS, np.array([[0]]), ratio=1.0)


def test_yolox_decoding_follows_the_grid_layout() -> None:
    cells, strides = yolox_grid(416)
    assert len(cells) == 3549 and list(np.unique(strides, return_counts=True)[1]) == [169, 676, 2704][::-1]
    assert cells[52 * 52 + 26 * 26].tolist() == [0, 0] and strides[-1] == 32  # maps in stride order, row by row
    boxes, scores = decode_yolox(yolox_rows()[0], ratio=0.5, input_size=416)
    # centre ((0.5 + 3) * 16, (0.25 + 5) * 16) = (56, 84), size (2 * 16, 4 * 16): corners (40, 52)-(72, 116)
    np.testing.assert_allclose(boxes, [[80, 104, 64, 128]], rtol=1e-5)
    np.testing.assert_allclose(scores, [0.72], rtol=1e-5)
    with pytest.raises(DataError, match="rows"):
        decode_yolox(yolox_rows()[0], ratio=1.0, input_size=320)


def test_both_detectors_run_their_graphs_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "rtmdet.onnx").write_bytes(rtmdet_graph())
    (tmp_path / "yolox.onnx").write_bytes(yolox_graph())
    image = np.zeros((480, 640, 3), np.uint8)  # letterbox ratio 0.5 at 320, 0.65 at 416
    [found] = RTMDetNano(tmp_path / "rtmdet.onnx", input_size=320).detect(image)  # the 0.2 box: under 0.3
    np.testing.assert_allclose(found.box_xywh, [40, 60, 200, 400])
    [person] = YoloxNano(tmp_path / "yolox.onnx").detect(image)
    np.testing.assert_allclose(person.box_xywh, np.array([40, 52, 32, 64]) / 0.65, rtol=1e-4)
    assert person.score == pytest.approx(0.72, rel=1e-5)


def test_a_fixed_size_graph_sets_the_input_size(tmp_path: Path) -> None:
    """The official RTMDet SDK export is fixed at 320x320: its size is read from the graph."""
    (tmp_path / "fixed.onnx").write_bytes(rtmdet_graph(320))
    assert RTMDetNano(tmp_path / "fixed.onnx").input_size == 320
    with pytest.raises(DataError, match="320x320 inputs only"):
        RTMDetNano(tmp_path / "fixed.onnx", input_size=384)
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    with pytest.raises(CheckpointError, match="broken.onnx"):
        RTMDetNano(tmp_path / "broken.onnx")


# --- part merging -------------------------------------------------------------------------------------

def test_part_boxes_merge_but_people_inside_other_boxes_stay(shared_data: Path) -> None:
    full, upper, lower_wide = [100, 50, 80, 300], [102, 48, 76, 180], [60, 200, 140, 150]
    assert merge_parts(np.array([full, upper]), 0.8).tolist() == [0]  # head-to-knees box of the same person
    assert merge_parts(np.array([upper, full]), 0.8).tolist() == [0]  # or the full box scoring lower
    assert merge_parts(np.array([full, lower_wide]), 0.8).tolist() == [0, 1]  # sticks out: not a part
    split = shared_data / "coco/coco_mini_train"
    hugging = np.stack(load_people(split / "person_keypoints.json")["000000488571.jpg"])
    assert merge_parts(hugging, 0.8).tolist() == [0, 1]  # one box fully inside the other, narrower: two people
    contained = 0
    for ann_file in ("coco/coco_mini_train/person_keypoints.json", "coco/mmpose_coco/person_keypoints.json",
                     "crowdpose/mmpose_crowdpose/crowdpose.json", "crowdpose/exlpose_lowlight/crowdpose.json"):
        data = json.loads((shared_data / ann_file).read_text())
        for image in data["images"]:
            boxes = np.array([a["bbox"] for a in data["annotations"]
                              if a["image_id"] == image["id"] and not a.get("iscrowd", 0)], dtype=np.float64)
            assert len(merge_parts(boxes, 0.8)) == len(boxes), (ann_file, image["file_name"])
            inside = [_inside(a, b) for i, a in enumerate(boxes) for j, b in enumerate(boxes) if i != j]
            contained += sum(value >= 0.8 for value in inside)
    assert contained >= 30  # plenty of people lie inside another's box; none of them is merged


# --- the factory --------------------------------------------------------------------------------------

def test_without_onnx_files_best_falls_back_to_ssdlite_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from sdpose_core.detection import find_frozen_graph

    if find_frozen_graph() is None:
        pytest.skip("SSDLite's graph package is not installed: nothing to fall back to")
    monkeypatch.setenv("SDPOSE_DETECTORS", str(tmp_path))
    monkeypatch.setattr(factory, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="sdpose_core.detection.factory"):
        detector = build_detector()
    assert detector.name == "SSDLite 6 passes"
    [line] = [r.getMessage() for r in caplog.records]
    assert "neither RTMDet-nano nor YOLOX-Nano found" in line and str(tmp_path) in line
    assert "python -m sdpose_core.detection download" in line and line in detector.describe()
    with pytest.raises(ConfigError, match=r"rtmdet_nano_person.onnx .* download rtmdet-nano"):
        build_detector("rtmdet-nano")
    with pytest.raises(ConfigError, match="unknown detector"):
        build_detector("yolo")


def test_best_is_rtmdet_then_yolox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPOSE_DETECTORS", str(tmp_path))
    (tmp_path / "yolox_nano.onnx").write_bytes(yolox_graph())
    assert build_detector().name == "YOLOX-Nano 416"
    (tmp_path / "rtmdet_nano_person.onnx").write_bytes(rtmdet_graph())
    best = build_detector(max_persons=3)
    assert best.name == "RTMDet-nano 384" and best.max_persons == 3 and str(tmp_path) in best.describe()
    assert factory.available_detectors()[:2] == ["rtmdet-nano", "yolox-nano"]


# --- downloads (offline: a local server the test starts) ----------------------------------------------

@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of an HTTP server on 127.0.0.1 serving `folder`."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_of_a_zipped_rtmdet_is_checked_and_then_found(
        served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = served
    graph = rtmdet_graph(320)
    with zipfile.ZipFile(root / "sdk.zip", "w") as archive:
        archive.writestr("rtmdet-nano/pipeline.json", "{}")
        archive.writestr("rtmdet-nano/end2end.onnx", graph)
    release = DetectorRelease("rtmdet-nano", "rtmdet_nano_person.onnx", f"{base}/sdk.zip", "test",
                              member="end2end.onnx", sha256=hashlib.sha256(graph).hexdigest())
    folder = tmp_path / "detectors"
    path = download_detector("rtmdet-nano", folder, release=release, timeout_s=10)
    assert path == folder / "rtmdet_nano_person.onnx" and path.read_bytes() == graph
    assert not list(folder.glob("*.part"))
    monkeypatch.setenv("SDPOSE_DETECTORS", str(folder))
    detector = build_detector()
    assert detector.name == "RTMDet-nano 320"  # the SDK export's fixed size
    [found] = detector.detect(np.zeros((320, 320, 3), np.uint8))
    np.testing.assert_allclose(found.box_xywh, [20, 30, 100, 200])


def test_download_refuses_wrong_files_and_says_what_to_do_offline(served: tuple[str, Path], tmp_path: Path) -> None:
    base, root = served
    (root / "yolox_nano.onnx").write_bytes(yolox_graph())
    (root / "not.zip").write_bytes(b"plain text")
    folder = tmp_path / "detectors"
    good = DetectorRelease("yolox-nano", "yolox_nano.onnx", f"{base}/yolox_nano.onnx", "test",
                           sha256=hashlib.sha256(yolox_graph()).hexdigest(), size=len(yolox_graph()))
    for wrong, message in ((DetectorRelease(**{**good.__dict__, "sha256": "0" * 64}), "SHA-256"),
                           (DetectorRelease(**{**good.__dict__, "size": 10}), "bytes"),
                           (DetectorRelease(**{**good.__dict__, "url": f"{base}/not.zip", "member": "end2end.onnx",
                                               "size": None, "sha256": None}), "not a zip"),
                           (DetectorRelease(**{**good.__dict__, "url": f"{base}/missing.onnx"}), "HTTP 404")):
        with pytest.raises(CheckpointError, match=message):
            download_detector("yolox-nano", folder, release=wrong, timeout_s=10)
        assert not (folder / "yolox_nano.onnx").exists()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    offline = DetectorRelease(**{**good.__dict__, "url": f"http://127.0.0.1:{closed}/yolox_nano.onnx"})
    with pytest.raises(CheckpointError, match=r"cannot download .* copy yolox_nano.onnx .* by hand"):
        download_detector("yolox-nano", folder, release=offline, timeout_s=10)
    path = download_detector("yolox-nano", folder, release=good, timeout_s=10)
    assert path.read_bytes() == yolox_graph()
    assert download_detector("yolox-nano", folder, release=offline) == path  # present: not fetched again
    with pytest.raises(ConfigError, match="no download known"):
        download_detector("ssdlite", folder)


def test_official_releases_are_the_ones_the_shared_readme_names() -> None:
    if not SHARED_README.is_file():
        pytest.skip(f"{SHARED_README} not found")
    text = SHARED_README.read_text()
    for release in RELEASES.values():
        assert release.url in text and release.sha256 in text, release.name
    yolox = RELEASES["yolox-nano"]
    assert re.search(r"3,659,407 bytes", text) and yolox.size == 3_659_407


# --- the real files on real images --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rtmdet-nano", "yolox-nano"])
def test_real_detectors_on_the_shared_coco_people(name: str, shared_data: Path) -> None:
    """scripts/measure_detector.py: RTMDet-nano 384 finds 61 of the 65 people with >= 6 visible keypoints
    (0.938) at 0.45 false positives per image; YOLOX-Nano 57 (0.877) at 0.47. SSDLite: 51 at 0.70."""
    shared_file(name)
    detector = build_detector(name)
    reports = None
    for split in COCO_SPLITS:
        reports = box_reports(detector, shared_data / split / "person_keypoints.json", shared_data / split / "images",
                              (detector.score_threshold,), reports)
    [report] = reports
    assert report.people == 65 and report.images == 40
    assert report.found >= {"rtmdet-nano": 61, "yolox-nano": 57}[name], report
    assert report.fp_per_image <= 0.5, report


@pytest.mark.parametrize("name", ["rtmdet-nano", "yolox-nano"])
def test_one_large_person_gives_one_box(name: str, shared_data: Path) -> None:
    """A person filling the frame: RTMDet at 480 without the stricter NMS and part merging also returned a
    head-to-knees box (0019, 0025, 0028, 0031), YOLOX without part merging an upper-body box (0025)."""
    path = shared_file(name)
    coco = shared_data / "coco/mmpose_coco"
    [truth] = load_people(coco / "person_keypoints.json")["000000000785.jpg"]
    [skier] = build_detector(name).detect(load_image(coco / "images/000000000785.jpg"))
    assert iou_xywh(skier.box_xywh[None], truth[None])[0, 0] > 0.8
    photos = [load_image(shared_data / "unlabeled/ccp_fullbody" / f"{n:04d}.jpg") for n in (19, 25, 28, 31)]
    old = (RTMDetNano(path, 480, nms_iou=0.6, containment=None) if name == "rtmdet-nano"
           else YoloxNano(path, containment=None))
    assert [_parts(build_detector(name).detect(photo)) for photo in photos] == [0, 0, 0, 0]
    assert sum(_parts(old.detect(photo)) for photo in photos) >= {"rtmdet-nano": 4, "yolox-nano": 1}[name]


def _inside(box: np.ndarray, outer: np.ndarray) -> float:
    """The fraction of `box`'s area inside `outer` (both xywh)."""
    x0, y0 = np.maximum(box[:2], outer[:2])
    x1, y1 = np.minimum(box[:2] + box[2:], outer[:2] + outer[2:])
    return max(0.0, x1 - x0) * max(0.0, y1 - y0) / max(float(box[2] * box[3]), 1e-12)


def _parts(found: list) -> int:
    """Boxes lying at least half inside the best box: a second box for the same person."""
    return sum(1 for d in found[1:] if _inside(d.box_xywh, found[0].box_xywh) >= 0.5)
