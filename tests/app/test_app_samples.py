"""The Samples & failure analysis and Review tabs, driven through their API with gradio_client against the
launched studio (app.ui.build_demo) on the shared data and on writable copies of it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

MMPOSE_COCO = "coco/mmpose_coco"
SMALL = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=24, depth=2, heads=4)
CROWD = "crowdpose/mmpose_crowdpose"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_set(source: Path, target: Path, keep_images: int | None = None) -> Path:
    """The set's JSON copied, its images linked (only the first `keep_images`); returns the JSON path."""
    ann_source = next(p for p in sorted(source.glob("*.json")) if "detection" not in p.name)
    data = json.loads(ann_source.read_text())
    (target / "images").mkdir(parents=True)
    for image in data["images"][:keep_images]:
        os.symlink(source / "images" / image["file_name"], target / "images" / image["file_name"])
    ann = target / ann_source.name
    ann.write_text(json.dumps(data))
    return ann


@pytest.fixture(scope="module")
def studio(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """(client, samples root with writable copies, review folder, the studio's AppContext) of a launched studio."""
    from app.context import AppContext
    from app.ui import build_demo
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    root = tmp_path_factory.mktemp("samples")
    _copy_set(shared_data / MMPOSE_COCO, root / "coco_copy")
    _copy_set(shared_data / MMPOSE_COCO, root / "partial", keep_images=3)
    _copy_set(shared_data / CROWD, root / "crowd_copy")
    reviews = tmp_path_factory.mktemp("reviews")
    # a small random SDPose-T keeps the runs quick on a busy CPU; the tabs' logic does not depend on the weights
    # (tests/analysis/test_analysis.py checks the analysis itself with predictions of known quality)
    weights = save_pretrained(build_model("sdpose-t", **SMALL), tmp_path_factory.mktemp("weights") / "small")
    demo = build_demo(AppContext(weights=str(weights), samples=str(shared_data), review_dir=str(reviews),
                                 num_threads=1))
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False), root, reviews, demo.sdpose_context
    finally:
        demo.close()


def analyse(client, ann: Path | str, cycles: int = 2, boxes: str = "gt", head_neck: str = "drop",
            cycle: int = 1, sort: str = "worst OKS", bucket: str = "all", error_class: str = "any",
            sample_size: int = 200, page: int = 1):
    return client.predict(str(ann), cycles, boxes, head_neck, False, cycle, sort, bucket, error_class, sample_size,
                          page, api_name="/samples_analyze")


def test_samples_tab_lists_and_analyses_a_shared_set(studio, shared_data: Path) -> None:
    client, _, _, _ = studio
    from sdpose_core.analysis import find_sample_sets

    chosen, note = client.predict(str(shared_data), api_name="/samples_open")
    # however many sets ../shared holds today: the tab lists what the core finds
    expected = find_sample_sets(shared_data)
    assert f"{len(expected)} labelled set(s)" in note and len(chosen["choices"]) == len(expected)
    assert chosen["value"].endswith("coco_mini_train/person_keypoints.json")
    labels = [label for label, _ in chosen["choices"]]
    assert any(label.startswith("crowdpose/mmpose_crowdpose (crowdpose, 2 images, 4 people") for label in labels)
    ann = shared_data / MMPOSE_COCO / "person_keypoints.json"
    status, chart, gallery, table, = analyse(client, ann)
    assert "Scoring:** all 17 joints scored" in status and "| cycle | AP |" in status
    assert chart["type"] == "plotly" and '"per joint, cycle 1"' in chart["plot"]
    assert len(gallery) == 4 and all(Path(item["image"]).is_file() for item in gallery)
    assert {row[0] for row in table["data"]} == {"000000000785.jpg", "000000040083.jpg", "000000196141.jpg",
                                                 "000000197388.jpg"}
    assert sum(row[1] for row in table["data"]) == 12  # labelled people
    _, _, medium, medium_table = analyse(client, ann, bucket="medium")
    assert [row[0] for row in medium_table["data"]] == ["000000197388.jpg"] and len(medium) == 1
    by_name = analyse(client, ann, sort="file name")[3]["data"]
    assert [row[0] for row in by_name] == sorted(row[0] for row in by_name)
    picture, people, text = client.predict(str(ann), 2, "gt", "drop", False, "196141", 2, True, True, True, True,
                                           api_name="/samples_image")
    assert Path(picture).is_file() and "4 labelled people" in text and "at cycle 2" in text
    assert people["headers"][:3] == ["person", "ann id", "OKS"] and "l_wrist" in people["headers"]
    assert len(people["data"]) == 4


def test_crowdpose_head_and_neck_treatment_is_stated(studio, shared_data: Path) -> None:
    client, _, _, _ = studio
    ann = shared_data / CROWD / "crowdpose.json"
    dropped = analyse(client, ann, cycles=1)[0]
    assert "12 shared limb joints are scored" in dropped and "left out" in dropped
    synthesized = analyse(client, ann, cycles=1, head_neck="synthesize")[0]
    assert "neck = midpoint of the shoulders" in synthesized
    detected = analyse(client, ann, cycles=1, boxes="detected")[0]
    assert "person_detections.json" in detected


def test_samples_tab_bad_input_gives_clear_messages(studio, tmp_path: Path) -> None:
    client, root, _, _ = studio
    empty = tmp_path / "empty"
    empty.mkdir()
    chosen, note = client.predict(str(empty), api_name="/samples_open")
    assert chosen["value"] is None and chosen["choices"] == [] and "no labelled set" in note
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [}')
    assert "not valid JSON" in client.predict(str(broken), api_name="/samples_open")[1]
    partial = root / "partial" / "person_keypoints.json"
    status = analyse(client, partial, cycles=1)[0]
    assert "1 of 4 images are missing" in status and "Skipped" in status
    missing = json.loads(partial.read_text())["images"][3]["file_name"]
    with pytest.raises(Exception, match="missing"):
        client.predict(str(partial), 1, "gt", "drop", False, missing, 1, True, True, True, True,
                       api_name="/samples_image")
    with pytest.raises(Exception, match="does not exist"):
        analyse(client, tmp_path / "nowhere.json")


def test_review_flags_fixes_reload_and_export(studio) -> None:
    from pycocotools.coco import COCO

    from sdpose_core.analysis.review_store import review_path_for

    client, root, reviews, ctx = studio
    ann = root / "coco_copy" / "person_keypoints.json"
    joint, picture, info, joints, position, note = client.predict(str(ann), api_name="/review_start")
    assert note == ""
    assert joint["value"] == "nose" and len(joint["choices"]) == 17 and Path(picture).is_file() and position == 1
    assert "Person 1 of 12" in info and str(reviews) in info and "not reviewed" in info
    assert len(joints["data"]) == 17
    summary = client.predict(str(ann), 2, "gt wrong", "shoulder too high", api_name="/review_flag")
    assert summary["flag"] == "gt wrong" and summary["position"] == 2
    moved = client.predict(str(ann), 2, "left_wrist", 101.5, 77.25, 1, api_name="/review_set_joint")
    assert moved["keypoints"][27:30] == [101.5, 77.25, 1]
    review_file, _ = review_path_for(ann, reviews)
    saved = json.loads(review_file.read_text())  # written at once
    assert saved["flags"][str(summary["ann_id"])]["flag"] == "gt wrong"
    assert saved["edits"][str(summary["ann_id"])]["9"] == [101.5, 77.25, 1]
    ctx.review_stores.clear()  # as after a restart: the store is read back from disk
    _, info, joints, position, note = client.predict(str(ann), 2, "left_wrist", True, api_name="/review_show")
    assert position == 2 and "Flag: gt wrong" in info and "left_wrist" in info
    assert note == "shoulder too high"  # a saved note is shown on revisit ...
    assert client.predict(str(ann), 3, "left_wrist", True, api_name="/review_show")[4] == ""  # ... and not carried on
    assert any(row[0] == "left_wrist" and "101.5, 77.2" in row[1] and "✎" in row[1] for row in joints["data"])
    files, note = client.predict(str(ann), api_name="/review_export")
    corrected, flags = files
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(corrected)
    assert coco.loadAnns([summary["ann_id"]])[0]["keypoints"][27:30] == [101.5, 77.25, 1]
    assert "gt wrong" in Path(flags).read_text() and "gt wrong: 1" in note


def test_review_survives_a_corrupt_review_file(studio) -> None:
    from sdpose_core.analysis.review_store import review_path_for

    client, root, reviews, _ = studio
    ann = root / "crowd_copy" / "crowdpose.json"
    review_file, _ = review_path_for(ann, reviews)
    review_file.write_text("{ not json")
    joint, _, info, *_ = client.predict(str(ann), api_name="/review_start")
    assert joint["value"] == "left_shoulder" and "Person 1 of 4" in info
    backups = list(review_file.parent.glob(review_file.name + ".corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text() == "{ not json"
    with pytest.raises(Exception, match="unknown review flag"):
        client.predict(str(ann), 1, "wrong-ish", "", api_name="/review_flag")
    with pytest.raises(Exception, match="outside"):
        client.predict(str(ann), 1, "neck", -50.0, 10.0, 2, api_name="/review_set_joint")


def _outside_served_folders() -> Path | None:
    """A writable folder outside the working dir and the system temp dir (gradio serves only those), or None."""
    import tempfile

    for base in (Path.home(), Path("/var/tmp")):
        resolved = base.resolve()
        inside = [resolved.is_relative_to(Path(p).resolve()) for p in (os.getcwd(), tempfile.gettempdir())]
        if base.is_dir() and os.access(base, os.W_OK) and not any(inside):
            return Path(tempfile.mkdtemp(prefix="sdpose-test-reviews-", dir=base))
    return None


def test_review_export_downloads_from_a_folder_gradio_does_not_serve(shared_data: Path, tmp_path: Path) -> None:
    """The default review folder (next to the data) lies outside the folders gradio may serve: the export
    still downloads through the API, with the exported content."""
    import shutil

    from app.context import AppContext
    from app.ui import build_demo
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    reviews = _outside_served_folders()
    if reviews is None:
        pytest.skip("no writable folder outside the working dir and the temp dir to put the reviews in")
    try:
        ann = _copy_set(shared_data / CROWD, tmp_path / "crowd")
        weights = save_pretrained(build_model("sdpose-t", **SMALL), tmp_path / "weights")
        demo = build_demo(AppContext(weights=str(weights), samples=str(ann), review_dir=str(reviews), num_threads=1))
        port = _free_port()
        demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        try:
            client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
            client.predict(str(ann), 1, "ambiguous", "two people overlap", api_name="/review_flag")
            (corrected, flags), note = client.predict(str(ann), api_name="/review_export")
        finally:
            demo.close()
        assert str(reviews) in note  # written where the reviews live ...
        assert {p.name for p in reviews.iterdir()} >= {Path(corrected).name, Path(flags).name}
        # ... and the downloaded copies hold the same content
        assert json.loads(Path(corrected).read_text())["annotations"]
        assert "two people overlap" in Path(flags).read_text()
        assert Path(flags).read_text() == (reviews / Path(flags).name).read_text()
    finally:
        shutil.rmtree(reviews, ignore_errors=True)


def test_a_large_set_is_analysed_on_a_seeded_sample_in_pages(studio, shared_data: Path) -> None:
    """lsp_extended (10,000 people): the analysis runs on the chosen sample and the gallery shows one page."""
    from app.tabs.samples import PAGE_SIZE

    client, _, _, _ = studio
    ann = shared_data / "lsp_extended" / "crowdpose.json"
    if not ann.is_file():
        pytest.skip(f"{ann} is not in the shared data")
    status, _, gallery, table = analyse(client, ann, cycles=1, sort="file name", sample_size=60)
    assert "seeded sample (seed 0) of 60 of the 10000 images" in status
    assert "Gallery page 1 of 2: images 1-48 of 60" in status
    assert len(gallery) == PAGE_SIZE == len(table["data"])
    status2, _, gallery2, table2 = analyse(client, ann, cycles=1, sort="file name", sample_size=60, page=2)
    assert "page 2 of 2: images 49-60 of 60" in status2 and len(gallery2) == 12
    names = [row[0] for row in table["data"] + table2["data"]]
    assert len(set(names)) == 60 and names == sorted(names)  # the two pages hold the whole sample once
    # the same sample again (seeded), and an image outside it still shows its ground truth
    assert [row[0] for row in analyse(client, ann, cycles=1, sort="file name", sample_size=60)[3]["data"]] == \
        names[:PAGE_SIZE]
    outside = next(f"im{i:05d}.jpg" for i in range(1, 10001) if f"im{i:05d}.jpg" not in names)
    _, people, text = client.predict(str(ann), 1, "gt", "drop", False, outside, 1, True, True, True, True, 60,
                                     api_name="/samples_image")
    assert "Ground truth only" in text and people["data"] == []
