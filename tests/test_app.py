"""The Gradio app, driven through its API with gradio_client on localhost."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client():
    from app.ui import build_demo

    demo = build_demo()
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def test_app_scores_the_shared_coco_example(client, shared_data: Path) -> None:
    example = shared_data / "coco" / "eval_example"
    table, raw = client.predict(
        gradio_client.handle_file(str(example / "example_coco_val.json")),
        gradio_client.handle_file(str(example / "example_coco_preds.json")),
        "coco",
        api_name="/score",
    )
    metrics = {row[0]: row[1] for row in table["data"]}
    assert metrics["AP"] == pytest.approx(0.86089, abs=1e-4)


def test_app_reports_bad_predictions_file_clearly(client, tmp_path: Path, shared_data: Path) -> None:
    bad = tmp_path / "preds.json"
    bad.write_text("this is not json")
    ann = shared_data / "coco" / "eval_example" / "example_coco_val.json"
    with pytest.raises(Exception, match="JSON"):
        client.predict(
            gradio_client.handle_file(str(ann)), gradio_client.handle_file(str(bad)), "coco", api_name="/score"
        )


def test_readme_starts_with_the_two_setup_commands_ci_runs() -> None:
    root = Path(__file__).resolve().parent.parent
    first, second = root.joinpath("README.md").read_text().splitlines()[:2]
    assert "pip install -r requirements.txt" in first and "python app.py" in first
    assert "pytest" in second
    assert "sed -n 1p README.md" in root.joinpath(".ci", "run").read_text()
