"""Public mode (issue 14), attacked as a visitor would: gradio_client against the launched studio, every endpoint by
name. Each attack asserts the refusal message and that nothing outside the allowed roots and the session folders
was read into an answer or written (the file system is compared before and after). The same calls against a
studio in local mode behave as they always did."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
handle_file = gradio_client.handle_file

SMALL = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=24, depth=2, heads=4)
MMPOSE_COCO = "coco/mmpose_coco"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_set(source: Path, target: Path) -> Path:
    data = json.loads((source / "person_keypoints.json").read_text())
    (target / "images").mkdir(parents=True)
    for image in data["images"]:
        os.symlink(source / "images" / image["file_name"], target / "images" / image["file_name"])
    ann = target / "person_keypoints.json"
    ann.write_text(json.dumps(data))
    return ann


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under the roots with its size and modification time (links not followed)."""
    files = {}
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                info = path.lstat()
                files[str(path)] = (info.st_size, info.st_mtime_ns)
    return files


@pytest.fixture(scope="module")
def world(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders: `allowed` (the operator's samples), `outside` (a writable labelled set the server can reach but
    does not offer), `state` (the public mode's data dir), `weights` (small random weights outside assets/)."""
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    base = tmp_path_factory.mktemp("public")
    allowed, outside = base / "allowed", base / "outside"
    _copy_set(shared_data / MMPOSE_COCO, allowed / "coco_copy")
    _copy_set(shared_data / MMPOSE_COCO, outside / "private_set")
    (allowed / "escape").symlink_to(outside)  # a link inside the allowed root that points out of it
    weights = save_pretrained(build_model("sdpose-t", **SMALL), base / "weights" / "small")
    full = save_pretrained(build_model("sdpose-t"), base / "weights" / "full")
    return {"allowed": allowed, "outside": outside, "state": base / "state", "weights": weights, "full": full,
            "base": base}


def _launch(ctx):
    from app.ui import build_demo, launch, public_launch_options

    demo = build_demo(ctx)
    queue = {"max_size": ctx.policy.limits.queue_size} if ctx.policy is not None else {}
    port = _free_port()
    launch(demo.queue(**queue), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
           **public_launch_options(ctx.policy))
    return demo, f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def public(world: dict[str, Path]):
    from app.context import AppContext
    from sdpose_core.hosting.limits import Limits
    from sdpose_core.hosting.policy import PublicPolicy

    policy = PublicPolicy.create(world["state"], sample_roots=[world["allowed"]],
                                 limits=Limits(upload_mb=20, video_seconds=1, zip_unpacked_mb=5))
    demo, url = _launch(AppContext(weights=str(world["weights"]), samples=str(world["allowed"]), num_threads=1,
                                   policy=policy))
    try:
        yield demo, url
    finally:
        demo.close()


@pytest.fixture(scope="module")
def local(world: dict[str, Path]):
    from app.context import AppContext

    demo, url = _launch(AppContext(weights=str(world["weights"]), samples=str(world["allowed"]), num_threads=1))
    try:
        yield demo, url
    finally:
        demo.close()


def _client(url: str):
    return gradio_client.Client(url, verbose=False)


@contextlib.contextmanager
def _refused(match: str):
    with pytest.raises(Exception, match=match):  # gradio_client raises AppError with the gr.Error's message
        yield


# ---------------------------------------------------------------------------------------------- the page
def test_the_page_says_it_is_a_public_demo(public, local) -> None:
    import urllib.request

    page = urllib.request.urlopen(public[1], timeout=30).read().decode()
    assert "Public demo:" in page and "private to this browser session" in page
    assert "Public demo:" not in urllib.request.urlopen(local[1], timeout=30).read().decode()


# ----------------------------------------------------------------------------------------- server paths
def test_no_sample_endpoint_takes_a_server_path(public, world: dict[str, Path]) -> None:
    client = _client(public[1])
    before = _snapshot(world["allowed"], world["outside"])
    private_ann = world["outside"] / "private_set" / "person_keypoints.json"
    for attack in ("/tmp", str(world["base"]), f"{world['allowed']}/../outside", str(world["allowed"] / "escape"),
                   "hf://datasets/org/any"):
        chosen, note = client.predict(attack, api_name="/samples_open")
        assert "public demo" in note and chosen["choices"] == [], (attack, note)
        assert "private_set" not in json.dumps(chosen)
    for ann in (private_ann, world["allowed"] / "escape" / "private_set" / "person_keypoints.json", "/etc/passwd"):
        with _refused("public demo"):
            client.predict(str(ann), 1, "gt", "drop", False, 1, "worst OKS", "all", "any", 10, 1,
                           api_name="/samples_analyze")
        with _refused("public demo"):
            client.predict(str(ann), api_name="/review_start")
        with _refused("public demo"):
            client.predict(str(ann), 1, "gt wrong", "", api_name="/review_flag")
        with _refused("public demo"):
            client.predict(str(ann), 1, "nose", 10.0, 10.0, 2, api_name="/review_set_joint")
        with _refused("public demo"):
            client.predict(str(ann), 1, "nose", True, api_name="/review_show")
        with _refused("public demo"):
            client.predict(str(ann), api_name="/review_export")
        with _refused("public demo"):
            client.predict(str(ann), 1, "gt", "drop", False, "785", 1, True, True, True, True,
                           api_name="/samples_image")
    # what the operator allowed still works
    chosen, note = client.predict(str(world["allowed"]), api_name="/samples_open")
    assert len(chosen["choices"]) == 1 and "coco_copy" in chosen["value"]
    assert _snapshot(world["allowed"], world["outside"]) == before  # nothing written next to either set
    assert not list(world["outside"].rglob("*.review.json"))


def test_weights_only_shipped_uploaded_or_listed(public, world: dict[str, Path]) -> None:
    client = _client(public[1])
    for attack in ("/etc/passwd", str(world["weights"]), f"{world['allowed']}/../weights/small",
                   "hf://someone/huge-model", "someone/huge-model"):
        with _refused("public demo"):
            client.predict(attack, None, api_name="/load_weights")
    # the Compare tab's weights field is a path too
    image = sorted((world["allowed"] / "coco_copy" / "images").iterdir())[0]
    with _refused("public demo"):
        client.predict(handle_file(str(image)), str(world["weights"]), 1, "whole-image", False, False, 0.3,
                       "columns", api_name="/compare")
    # an upload is allowed: copied into this session's folder, and the current weights change for this session only
    other = _client(public[1])
    upload = world["full"] / "model.safetensors"  # SDPose-T at 256x192: its variant is read from the tensors
    client.predict("", handle_file(str(upload)), api_name="/load_weights")
    chosen = list(public[0].sdpose_context._session_current.values())
    assert len(chosen) == 1 and str(world["state"].resolve()) in chosen[0]
    _, _, _, _, spec = other.predict(api_name="/reset_weights")
    assert spec == ""  # the other visitor still sees the operator's weights


# ---------------------------------------------------------------------------------------------- per session
def test_two_visitors_review_the_same_set_without_seeing_each_other(public, world: dict[str, Path]) -> None:
    ann = world["allowed"] / "coco_copy" / "person_keypoints.json"
    alice, bob = _client(public[1]), _client(public[1])
    alice.predict(str(ann), api_name="/review_start")
    bob.predict(str(ann), api_name="/review_start")
    said_a = alice.predict(str(ann), 1, "gt wrong", "alice: elbow off", api_name="/review_flag")
    said_b = bob.predict(str(ann), 1, "ok", "bob: fine", api_name="/review_flag")
    assert said_a["flag"] == "gt wrong" and said_b["flag"] == "ok"
    assert "/" not in said_a["review_file"]  # the visitor sees a file name, not the server's folders
    files = sorted(world["state"].rglob("*.review.json"))
    assert len(files) == 2 and all("sessions" in f.parts for f in files)
    texts = [f.read_text() for f in files]
    assert sum("alice" in t for t in texts) == 1 and sum("bob" in t for t in texts) == 1
    assert not any("alice" in t and "bob" in t for t in texts)
    assert not list(ann.parent.glob("*.review.json"))  # nothing next to the operator's data
    import tempfile

    temp_exports = set(Path(tempfile.gettempdir()).glob("sdpose-review-export-*"))
    exported, _ = alice.predict(str(ann), api_name="/review_export")
    assert len(exported) == 2 and all(Path(f).read_text() for f in exported)  # served, downloadable
    alice_folder = next(f.parent for f in files if "alice" in f.read_text()).parent
    assert len(list((alice_folder / "exports").rglob("*.corrected.json"))) == 1  # written in her session only
    assert set(Path(tempfile.gettempdir()).glob("sdpose-review-export-*")) == temp_exports


# ------------------------------------------------------------------------------------------------ bounded work
def test_oversize_inputs_get_a_clear_message(public, world: dict[str, Path], tmp_path: Path,
                                            png_claiming_size) -> None:
    client = _client(public[1])
    before = _snapshot(world["allowed"], world["outside"])
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming_size(20000, 20000))
    with _refused("accepts up to 40 MP"):
        client.predict(handle_file(str(huge)), "current (Model tab)", 1, "whole-image", False, False, 0.3, "columns",
                       api_name="/compare")
    image = sorted((world["allowed"] / "coco_copy" / "images").iterdir())[0]
    with _refused("greater than maximum value 8"):  # the slider itself refuses it
        client.predict(handle_file(str(image)), "current (Model tab)", 50, "whole-image", False, False, 0.3, "columns",
                       api_name="/compare")
    long = _video(tmp_path / "long.avi", seconds=3)  # the fixture's limit: 1 s
    with _refused(r"the video is 3 s long.*--max-video-s"):
        client.predict(handle_file(str(long)), "single pass (cycle 1)", 3, False, 5, 0.3, 10, 240,
                       api_name="/annotate_video")
    short = _video(tmp_path / "short.avi", seconds=0.5)  # within the limit: annotated into the session folder
    client.predict(handle_file(str(short)), "single pass (cycle 1)", 3, False, 5, 0.3, 10, 240,
                   api_name="/annotate_video")
    assert len(list(world["state"].rglob("short_pose.*"))) == 1
    bomb = _bomb(tmp_path / "bomb.zip")  # 50 MB of zeros in ~50 KB; the fixture's limit: 5 MB unpacked
    with _refused(r"unpacks to 50 MB.*--max-zip-mb"):
        client.predict(handle_file(str(bomb)), api_name="/samples_upload")
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"0" * 21_000_000)  # over the fixture's 20 MB upload cap: gradio refuses the upload itself
    with _refused("(?i)too large|exceeds|size"):
        client.predict("", handle_file(str(big)), api_name="/load_weights")
    assert _snapshot(world["allowed"], world["outside"]) == before
    assert not list(world["state"].rglob("zeros.bin"))  # the bomb was never unpacked


def test_a_visitor_uploads_a_labelled_set_as_a_zip(public, world: dict[str, Path], tmp_path: Path) -> None:
    client, other = _client(public[1]), _client(public[1])
    archive = tmp_path / "mine.zip"
    source = world["allowed"] / "coco_copy"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(source / "person_keypoints.json", "mine/person_keypoints.json")
        for image in sorted((source / "images").iterdir())[:2]:
            out.write(image.resolve(), f"mine/images/{image.name}")
    chosen, note = client.predict(handle_file(str(archive)), api_name="/samples_upload")
    assert len(chosen["choices"]) == 1 and chosen["value"].endswith("mine/person_keypoints.json")
    assert str(world["state"].resolve()) in chosen["value"]
    status = client.predict(chosen["value"], 1, "gt", "drop", False, 1, "worst OKS", "all", "any", 10, 1,
                            api_name="/samples_analyze")[0]
    assert "| cycle | AP |" in status
    with _refused("public demo"):  # another visitor cannot open it
        other.predict(chosen["value"], 1, "gt", "drop", False, 1, "worst OKS", "all", "any", 10, 1,
                      api_name="/samples_analyze")
    # the Review tab's Open with nothing typed offers the operator's sets and this visitor's own
    mine, _ = client.predict("", api_name="/review_sets")
    theirs, _ = other.predict("", api_name="/review_sets")
    assert chosen["value"] in [value for _, value in mine["choices"]]
    assert chosen["value"] not in [value for _, value in theirs["choices"]] and len(theirs["choices"]) == 1


def test_local_mode_behaves_as_before(local, world: dict[str, Path]) -> None:
    client = _client(local[1])
    chosen, note = client.predict(str(world["outside"]), api_name="/samples_open")
    assert "public demo" not in note and len(chosen["choices"]) == 1
    ann = world["outside"] / "private_set" / "person_keypoints.json"
    client.predict(str(ann), api_name="/review_start")
    client.predict(str(ann), 1, "ok", "local note", api_name="/review_flag")
    assert (ann.parent / "person_keypoints.review.json").is_file()  # next to the data, as always
    _, summary, _, _, spec = client.predict(str(world["weights"]), None, api_name="/load_weights")
    assert spec == str(world["weights"])
    (ann.parent / "person_keypoints.review.json").unlink()


def _video(path: Path, seconds: float, fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(int(seconds * fps)):
        writer.write(np.full((48, 64, 3), i % 255, np.uint8))
    writer.release()
    return path


def _bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("set/zeros.bin", b"\0" * 50_000_000)
    return path


# ---------------------------------------------------------------------------------------------- start-up
def test_spaces_turns_public_mode_on_and_flags_set_the_limits(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    from app.main import parse_args, public_policy

    monkeypatch.delenv("SPACE_ID", raising=False)
    assert public_policy(parse_args([])) is None  # local by default
    monkeypatch.setenv("SPACE_ID", "someone/sdpose-studio")
    policy = public_policy(parse_args(["--state-dir", str(tmp_path), "--max-upload-mb", "3", "--max-video-s", "9",
                                       "--hub-allow", "org/weights"]))
    assert policy is not None and policy.limits.upload_mb == 3 and policy.limits.video_seconds == 9
    assert policy.hub_allow == ["org/weights"] and policy.sessions.root == (tmp_path / "sessions").resolve()
    assert public_policy(parse_args(["--local"])) is None  # a private Space
    monkeypatch.delenv("SPACE_ID")
    assert public_policy(parse_args(["--public", "--state-dir", str(tmp_path)])) is not None


def test_a_flood_gets_busy_not_unbounded_memory(world: dict[str, Path]) -> None:
    """With the queue full, a request is answered at once with gradio's "queue is full" instead of waiting."""
    from app.context import AppContext
    from sdpose_core.hosting.limits import Limits
    from sdpose_core.hosting.policy import PublicPolicy

    policy = PublicPolicy.create(world["state"], sample_roots=[world["allowed"]], limits=Limits(queue_size=1))
    demo, url = _launch(AppContext(weights=str(world["weights"]), samples=str(world["allowed"]), num_threads=1,
                                   policy=policy))
    try:
        ann = str(world["allowed"] / "coco_copy" / "person_keypoints.json")
        clients = [_client(url) for _ in range(6)]
        jobs = [c.submit(ann, 3, "gt", "drop", True, 1, "worst OKS", "all", "any", 0, 1, api_name="/samples_analyze")
                for c in clients]
        errors = []
        for job in jobs:
            try:
                job.result(timeout=300)
            except Exception as exc:  # noqa: BLE001 - the refusal is what this test looks for
                errors.append(str(exc))
        assert any("queue is full" in e.lower() for e in errors), errors
    finally:
        demo.close()
