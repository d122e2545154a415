"""Review store: where the file goes (the shared data folder is read-only), atomic saves that survive a
crash between the temporary write and the rename, reload, corrupt files, and the export of the corrected
COCO JSON (read back with pycocotools) and the CSV of flags."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpose_core.analysis.review_store import REVIEW_FLAGS, ReviewStore, atomic_write_text, review_path_for
from sdpose_core.errors import DataError

MMPOSE_COCO = "coco/mmpose_coco/person_keypoints.json"
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def coco_copy(shared_data: Path, tmp_path: Path) -> tuple[Path, dict]:
    """A writable copy of the shared mmpose_coco annotation file (images are not needed here)."""
    data = json.loads((shared_data / MMPOSE_COCO).read_text())
    ann = tmp_path / "set" / "person_keypoints.json"
    ann.parent.mkdir()
    ann.write_text(json.dumps(data))
    return ann, data


def test_review_file_location_rules(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    coco_copy: tuple[Path, dict]) -> None:
    ann, _ = coco_copy
    beside, where = review_path_for(ann)
    assert beside == ann.parent / "person_keypoints.review.json" and "next to the annotations" in where
    chosen, where = review_path_for(ann, tmp_path / "reviews")
    assert chosen.parent == tmp_path / "reviews" and "--review-dir" in where
    # the shared data folder is read-only: the review goes to the per-user default and the message says why
    monkeypatch.setenv("SDPOSE_REVIEW_DIR", str(tmp_path / "fallback"))
    shared_ann = shared_data / MMPOSE_COCO
    fallback, where = review_path_for(shared_ann)
    assert fallback.parent == tmp_path / "fallback" and "read-only" in where
    assert fallback.name.endswith(".review.json") and "mmpose_coco" in fallback.name
    assert not list(shared_ann.parent.glob(".sdpose-write-test-*"))  # nothing was even tried there
    # a folder without write permission bits counts as read-only, even for root
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "a.json").write_text("{}")
    locked.chmod(0o555)
    try:
        assert review_path_for(locked / "a.json")[0].parent == tmp_path / "fallback"
    finally:
        locked.chmod(0o755)


def test_edits_are_saved_at_once_and_reload(coco_copy: tuple[Path, dict], tmp_path: Path) -> None:
    ann, data = coco_copy
    path = tmp_path / "r" / "set.review.json"
    store = ReviewStore.open(path, ann)
    first = data["annotations"][0]["id"]
    store.set_flag(first, "gt wrong", "elbow on the wrong arm")
    store.set_keypoint(first, 7, 120.5, 80.25)
    store.set_keypoint(first, 8, 0, 0, visibility=0)
    reloaded = ReviewStore.open(path, ann)  # a fresh process would read exactly this file
    assert reloaded.flag_of(first) == "gt wrong" and reloaded.flags[first]["note"] == "elbow on the wrong arm"
    assert reloaded.edits == {first: {7: [120.5, 80.25, 2], 8: [0.0, 0.0, 0]}}
    reloaded.clear_flag(first)
    reloaded.reset_person(first)
    assert ReviewStore.open(path, ann).flags == {} and ReviewStore.open(path, ann).edits == {}
    with pytest.raises(DataError, match="unknown review flag"):
        store.set_flag(first, "looks odd")
    assert set(REVIEW_FLAGS) == {"ok", "gt wrong", "prediction wrong", "ambiguous"}


def test_failed_rename_leaves_the_old_file_and_state(coco_copy: tuple[Path, dict], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ann, data = coco_copy
    path = tmp_path / "reviews" / "set.review.json"
    path.parent.mkdir()
    store = ReviewStore.open(path, ann)
    first, second = data["annotations"][0]["id"], data["annotations"][1]["id"]
    store.set_flag(first, "ok")
    before = path.read_bytes()

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sdpose_core.analysis.review_store.os.replace", disk_full)
    with pytest.raises(DataError, match="could not save the review"):
        store.set_flag(second, "ambiguous")
    assert path.read_bytes() == before and store.flag_of(second) is None  # nothing half-done
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temporary file was removed


def test_a_crash_between_temp_write_and_rename_keeps_the_old_file(coco_copy: tuple[Path, dict],
                                                                   tmp_path: Path) -> None:
    ann, data = coco_copy
    path = tmp_path / "set.review.json"
    store = ReviewStore.open(path, ann)
    first = data["annotations"][0]["id"]
    store.set_flag(first, "prediction wrong")
    before = path.read_bytes()
    # a real process dies (os._exit: no cleanup, no finally) right after the temp file is written and fsync'ed
    script = (
        "import os, sys\n"
        "from sdpose_core.analysis import review_store as review\n"
        "review.os.replace = lambda *a: os._exit(9)\n"
        "store = review.ReviewStore.open(sys.argv[1], sys.argv[2])\n"
        "store.set_flag(int(sys.argv[3]), 'ambiguous')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    done = subprocess.run([sys.executable, "-c", script, str(path), str(ann), str(data["annotations"][1]["id"])],
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr.decode()
    assert path.read_bytes() == before  # old file intact
    leftovers = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and "ambiguous" in leftovers[0].read_text()  # the new content never replaced it
    assert ReviewStore.open(path, ann).flags.keys() == {first}


def test_corrupt_review_file_is_reported_or_moved_aside(coco_copy: tuple[Path, dict], tmp_path: Path) -> None:
    ann, _ = coco_copy
    path = tmp_path / "set.review.json"
    path.write_text('{"format": "sdpose-review", "flags": {')
    with pytest.raises(DataError, match="corrupt"):
        ReviewStore.open(path, ann)
    assert path.read_text().startswith('{"format"')  # untouched
    store = ReviewStore.open(path, ann, on_corrupt="backup")
    backups = list(tmp_path.glob("set.review.json.corrupt-*"))
    assert len(backups) == 1 and backups[0].read_text().startswith('{"format"')
    assert store.flags == {} and "moved to" in store.notes[0]
    path.write_text(json.dumps({"format": "sdpose-review", "version": 1, "flags": {"5": {"flag": "meh"}},
                                "edits": {}}))
    with pytest.raises(DataError, match="flags are"):
        ReviewStore.open(path, ann)
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match="not an SDPose review file"):
        ReviewStore.open(path, ann)


def test_export_round_trips_through_pycocotools(coco_copy: tuple[Path, dict], tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    ann, data = coco_copy
    store = ReviewStore.open(tmp_path / "set.review.json", ann)
    target = next(a for a in data["annotations"] if a["num_keypoints"] >= 10)
    untouched = next(a for a in data["annotations"] if a["id"] != target["id"])
    was_labelled = target["keypoints"][3 * 3 + 2] > 0
    store.set_keypoint(target["id"], 9, 321.75, 123.5, visibility=1)
    store.set_keypoint(target["id"], 3, 0, 0, visibility=0)
    store.set_flag(target["id"], "gt wrong", "wrist, ear")
    store.set_flag(untouched["id"], "ok")
    out = store.export_coco(data, tmp_path / "out" / "corrected.json")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out))
    fixed = coco.loadAnns([target["id"]])[0]
    assert fixed["keypoints"][27:30] == [321.75, 123.5, 1]
    assert fixed["keypoints"][9:12] == [0, 0, 0]
    assert fixed["num_keypoints"] == target["num_keypoints"] - int(was_labelled) + int(target["keypoints"][29] == 0)
    assert coco.loadAnns([untouched["id"]])[0]["keypoints"] == untouched["keypoints"]
    assert len(coco.getAnnIds()) == len(data["annotations"]) and data["annotations"][0] is not fixed
    rows = list(csv.DictReader(store.export_flags_csv(data, tmp_path / "out" / "flags.csv").open()))
    by_id = {int(r["ann_id"]): r for r in rows}
    assert by_id[target["id"]]["flag"] == "gt wrong" and by_id[target["id"]]["edited_joints"] == "3 9"
    assert by_id[untouched["id"]]["flag"] == "ok" and len(rows) == 2
    foreign = ReviewStore.open(tmp_path / "other.review.json", ann)
    foreign.set_keypoint(999999999, 1, 1.0, 1.0)
    with pytest.raises(DataError, match="another version of the dataset"):
        foreign.corrected_coco(data)


def test_atomic_write_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "file.json"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and (target.stat().st_mode & 0o777) == 0o640
