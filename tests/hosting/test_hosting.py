"""The public mode's core (issue 14): the path gate, upload checks, per-session folders, the policy's rules and the
README's limits table. The app-level attacks are in tests/app/test_public_mode.py."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from sdpose_core.errors import AccessError, DataError, LimitError
from sdpose_core.hosting.limits import LIMIT_FLAGS, Limits, limits_table
from sdpose_core.hosting.paths import resolve_inside
from sdpose_core.hosting.policy import SHIPPED_WEIGHTS, PublicPolicy
from sdpose_core.hosting.sessions import SessionDirs
from sdpose_core.hosting.uploads import check_image_file, check_video_file, extract_annotation_zip

ALLOWED = "use the listed sets"


# ------------------------------------------------------------------------------------------------ paths
def test_paths_inside_the_roots_pass_and_escapes_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "set").mkdir(parents=True)
    (root / "set" / "ann.json").write_text("{}")
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    assert resolve_inside(root / "set" / "ann.json", [root], "sample path", ALLOWED) == (root / "set" / "ann.json")
    for attack in (str(outside), f"{root}/../secret.json", "/etc/passwd", "~/x", f"{root}/set\x00/ann.json", ""):
        with pytest.raises(AccessError, match="public demo") as refused:
            resolve_inside(attack, [root], "sample path", ALLOWED)
        assert ALLOWED in str(refused.value)
    # a symlink planted inside an allowed root that points out of it
    (root / "set" / "link.json").symlink_to(outside)
    (root / "escape").symlink_to(tmp_path)
    for attack in (root / "set" / "link.json", root / "escape" / "secret.json"):
        with pytest.raises(AccessError, match="outside what this server offers"):
            resolve_inside(attack, [root], "sample path", ALLOWED)


# ---------------------------------------------------------------------------------------------- uploads
def test_image_checks_read_the_header_only(tmp_path: Path, png_claiming_size) -> None:
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((40, 30, 3), np.uint8))
    assert check_image_file(small, Limits()) == (30, 40)
    # a 20000 x 20000 PNG (its header says so; the pixel data would decode to 1.2 GB): refused unread
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming_size(20000, 20000))
    with pytest.raises(LimitError, match="--max-image-mp"):
        check_image_file(huge, Limits())
    with pytest.raises(LimitError, match="--max-upload-mb"):
        check_image_file(small, Limits(upload_mb=small.stat().st_size / 2e6))
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(DataError, match="not an image"):
        check_image_file(text, Limits())


def test_video_length_is_read_from_the_container(shared_data: Path, tmp_path: Path) -> None:
    videos = sorted((shared_data / "unlabeled").rglob("*.mp4"))
    if not videos:
        pytest.skip(f"no shared video under {shared_data / 'unlabeled'}")
    seconds = check_video_file(videos[0], Limits(upload_mb=1e4, video_seconds=1e6))
    assert seconds > 0
    with pytest.raises(LimitError, match=r"the video is \d+ s long.*--max-video-s"):
        check_video_file(videos[0], Limits(upload_mb=1e4, video_seconds=seconds / 2))


def _zip(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if link is not None:
            info = zipfile.ZipInfo("set/link.jpg")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, link)
    return path


def test_zip_is_checked_before_anything_is_unpacked(tmp_path: Path) -> None:
    good = _zip(tmp_path / "good.zip", {"set/person_keypoints.json": b"{}", "set/images/a.jpg": b"x"})
    out = extract_annotation_zip(good, tmp_path / "out", Limits())
    assert (out / "set" / "person_keypoints.json").read_bytes() == b"{}"
    # a zip bomb: 300 MB of zeros in a small file
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("set/zeros.bin", b"\0" * 300_000_000)
    assert bomb.stat().st_size < 1e6
    attacks = {
        "bomb": (bomb, LimitError, "unpacks to 300 MB.*--max-zip-mb", Limits(zip_unpacked_mb=100)),
        "many": (_zip(tmp_path / "many.zip", {f"f{i}": b"" for i in range(30)}), LimitError, "30 files",
                 Limits(zip_members=10)),
        "dotdot": (_zip(tmp_path / "dotdot.zip", {"../../evil.json": b"{}"}), DataError, "points outside", Limits()),
        "absolute": (_zip(tmp_path / "abs.zip", {"/tmp/evil.json": b"{}"}), DataError, "points outside", Limits()),
        "link": (_zip(tmp_path / "link.zip", {}, link="/etc/passwd"), DataError, "points outside", Limits()),
    }
    for name, (archive, error, match, limits) in attacks.items():
        target = tmp_path / f"unpacked-{name}"
        with pytest.raises(error, match=match):
            extract_annotation_zip(archive, target, limits)
        assert not target.exists(), name
    assert not (tmp_path.parent / "evil.json").exists()
    plain = tmp_path / "plain.zip"
    plain.write_text("hello")
    with pytest.raises(DataError, match="not a zip"):
        extract_annotation_zip(plain, tmp_path / "x", Limits())


# --------------------------------------------------------------------------------------------- sessions
def test_sessions_are_separate_and_cleaned_after_their_ttl(tmp_path: Path) -> None:
    dirs = SessionDirs(tmp_path / "state", ttl_hours=1)
    a, b = dirs.folder("visitor-a"), dirs.folder("visitor-b")
    assert a != b and a.parent == b.parent == (tmp_path / "state" / "sessions").resolve()
    assert dirs.folder("visitor-a") == a and "visitor" not in a.name  # a digest, never the visitor's string
    with pytest.raises(AccessError, match="no browser session"):
        dirs.folder(None)
    old = time.time() - 2 * 3600
    os.utime(a / ".last_use", (old, old))
    assert dirs.cleanup() == [a]
    assert not a.exists() and b.exists()


# --------------------------------------------------------------------------------------------- policy
def test_policy_allows_only_the_operators_sets_this_sessions_uploads_and_listed_repos(tmp_path: Path,
                                                                                     shared_data: Path) -> None:
    policy = PublicPolicy.create(tmp_path / "state", sample_roots=[shared_data / "coco" / "mmpose_coco"],
                                 hub_allow=["org/ok"])
    ann = shared_data / "coco" / "mmpose_coco" / "person_keypoints.json"
    assert policy.check_sample_path(str(ann), "s1") == ann.resolve()
    for attack in (str(shared_data / "coco" / "coco_mini_train"), "/tmp", "hf://datasets/org/x"):
        with pytest.raises(AccessError, match="public demo"):
            policy.check_sample_path(attack, "s1")
    # another session's upload is not this session's
    upload = policy.uploads_folder("s2") / "set"
    upload.mkdir()
    assert policy.check_sample_path(str(upload), "s2") == upload
    with pytest.raises(AccessError):
        policy.check_sample_path(str(upload), "s1")

    assert policy.check_weights("", "s1") == ""
    shipped = next(p for p in SHIPPED_WEIGHTS.iterdir() if (p / "config.json").is_file())
    assert policy.check_weights(str(shipped), "s1") == str(shipped.resolve())
    for attack in ("/etc/passwd", str(tmp_path), "hf://evil/huge", f"{SHIPPED_WEIGHTS}/../README.md"):
        with pytest.raises(AccessError, match="public demo"):
            policy.check_weights(attack, "s1")
    with pytest.raises(LimitError, match="holds 300 MB.*--hub-max-mb"):
        policy.check_hub_size("org/ok", size=300_000_000)
    assert policy.check_hub_size("org/ok", size=1000) == 1000

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"0" * 100)
    copied = policy.take_upload(weights, "s1", "weights")
    assert copied.read_bytes() == weights.read_bytes() and policy.uploads_folder("s1") in copied.parents
    assert policy.check_weights(str(copied), "s1") == str(copied)
    with pytest.raises(AccessError):
        policy.check_weights(str(copied), "s2")


def test_set_files_named_outside_the_set_are_refused(tmp_path: Path, shared_data: Path) -> None:
    policy = PublicPolicy.create(tmp_path / "state", sample_roots=[shared_data / "coco" / "mmpose_coco"])
    inside = sorted((shared_data / "coco" / "mmpose_coco" / "images").iterdir())[:2]
    policy.check_set_files(inside, "s1")
    with pytest.raises(AccessError, match="image named by the annotation file"):
        policy.check_set_files([*inside, "/etc/hostname"], "s1")


def test_limits_table_lists_every_limit_with_its_flag_and_the_readme_quotes_it() -> None:
    table = limits_table()
    for name, (flag, _) in LIMIT_FLAGS.items():
        assert f"`{flag}`" in table and name in Limits.__dataclass_fields__
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert table in readme, "README's limits table is out of date: paste sdpose_core.hosting.limits.limits_table()"
    with pytest.raises(Exception, match="upload_mb"):
        Limits(upload_mb=0)

