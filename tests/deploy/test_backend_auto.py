"""backend="auto": the fastest backend whose heatmaps match fp32 torch here, chosen once, cached outside the
package; the Predictor, the CLI, the app's Compare / Webcam / Model tabs say what ran.

A small image-dependent SDPose (64x48 input) keeps export and int8 quantization to seconds; the check crops
are the real shared COCO people (`load_real_crops`). The cache folder is the session's temporary one that
tests/conftest.py sets through SDPOSE_CACHE_DIR.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sdpose_core.deploy import auto_backend as backend_auto
from sdpose_core.deploy.auto_backend import CANDIDATES, compare_heatmaps, select_backend
from sdpose_core.deploy.backend_cache import selection_key
from sdpose_core.errors import ConfigError
from sdpose_core.models import build_model
from sdpose_core.paths import PACKAGE_DIR, cache_root

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: only torch can run")
TINY = dict(image_size=(64, 48), heatmap_size=(16, 12), patch_size=(2, 2), dim=32, depth=2, heads=4)
IMAGE = ("coco", "mmpose_coco", "images", "000000000785.jpg")
BOX = [[280.0, 40.0, 200.0, 380.0]]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def sensitised(seed: int = 0) -> nn.Module:
    """Random SDPose whose heatmaps depend on the crop (the official init makes them nearly constant)."""
    torch.manual_seed(seed)
    model = build_model("sdpose-t", **TINY)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    return sensitised()


def package_files() -> set[Path]:
    return {p for p in PACKAGE_DIR.rglob("*") if "__pycache__" not in p.parts}


def test_cache_root_follows_the_environment_and_never_the_package(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDPOSE_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == (tmp_path / "mine").resolve()
    monkeypatch.delenv("SDPOSE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == (tmp_path / "xdg" / "sdpose").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == (tmp_path / "home" / ".cache" / "sdpose").resolve()
    for inside in (PACKAGE_DIR / "cache", PACKAGE_DIR.parent / "cache"):
        monkeypatch.setenv("SDPOSE_CACHE_DIR", str(inside))
        with pytest.raises(ConfigError, match="inside .*set SDPOSE_CACHE_DIR"):
            cache_root()


def test_auto_picks_a_backend_that_matches_and_refuses_broken_ones(tiny: nn.Module, shared_data: Path) -> None:
    def zeros(cycles: int):  # the fastest "backend" of all, and wrong
        return lambda images, c: [np.zeros((len(images), 17, 16, 12), np.float32)] * c

    def shifted(cycles: int):  # right values, every peak two heatmap pixels off
        run = backend_auto._torch_runner(tiny)
        return lambda images, c: [np.roll(maps, 2, axis=-1) for maps in run(images, c)]

    def crashing(cycles: int):
        def run(images, c):
            raise RuntimeError("onnxruntime: kernel not implemented")
        return run

    before = package_files()
    selection = select_backend(tiny, threads=1, graph_cycles=(1, 3),
                               extra_candidates={"zeros": zeros, "shifted": shifted, "crashing": crashing})
    assert package_files() == before  # nothing written into the package
    assert Path(selection.folder).is_relative_to(Path(os.environ["SDPOSE_CACHE_DIR"]))
    assert "GT person crops of coco/mmpose_coco" in selection.check_inputs
    for cycles in (1, 3):
        verdicts = {r.name: r for r in selection.results[cycles]}
        assert not verdicts["zeros"].accepted and "outside the tolerance" in verdicts["zeros"].reason
        assert not verdicts["shifted"].accepted and verdicts["shifted"].keypoints_within < 0.95
        assert not verdicts["crashing"].accepted and "failed: RuntimeError" in verdicts["crashing"].reason
        assert verdicts["torch"].accepted and verdicts["onnx-fp32"].accepted  # fp32 graphs match to ~1e-6
        chosen = selection.chosen_for(cycles)
        assert chosen in CANDIDATES and verdicts[chosen].accepted
        accepted = [r for r in verdicts.values() if r.accepted]
        assert verdicts[chosen].ms_per_person == min(r.ms_per_person for r in accepted)
        if chosen.startswith("onnx"):
            assert Path(verdicts[chosen].path).parent == Path(selection.folder)
        # the choice also matches fp32 on people it was not checked on
        from sdpose_core.deploy.crops import load_real_crops
        from sdpose_core.deploy.export import torch_heatmaps

        others, _ = load_real_crops((64, 48), limit=6, split="coco/coco_mini_train")
        runner = (backend_auto._onnx_runner(Path(verdicts[chosen].path), 1) if chosen.startswith("onnx")
                  else backend_auto._torch_runner(tiny))
        ok, diff, peak, share = compare_heatmaps(torch_heatmaps(tiny, others, cycles), runner(others, cycles))
        assert ok, (chosen, diff, peak, share)
    assert "refused" in selection.summary() and "CHOSEN" in selection.summary()


def test_the_choice_is_cached_by_weights_and_read_back_cheaply(shared_data: Path) -> None:
    model = sensitised(seed=5)
    first = select_backend(model, threads=1)
    stored = Path(first.folder) / "selection.json"
    assert not first.from_cache and stored.is_file()
    assert json.loads(stored.read_text())["facts"]["weights_sha256"] == first.facts["weights_sha256"]
    backend_auto._MEMO.clear()  # as in a new process
    start = time.perf_counter()
    again = select_backend(model, threads=1)
    assert again.from_cache and time.perf_counter() - start < 2.0
    assert again.chosen == first.chosen and again.key == first.key
    key, parts = selection_key(sensitised(seed=6), 1, list(CANDIDATES), [1, 3], dict(backend_auto.TOLERANCE))
    assert parts["weights_sha256"] != first.facts["weights_sha256"] and key != first.key  # other weights


def test_old_choices_are_pruned(tmp_path: Path) -> None:
    from sdpose_core.deploy.backend_cache import prune_old_choices

    for age in range(10):
        folder = tmp_path / f"choice{age}"
        folder.mkdir()
        (folder / "sdpose_c1.onnx").write_bytes(b"graph")
        os.utime(folder, (time.time() - 100 * age,) * 2)
    removed = prune_old_choices(tmp_path, keep=8)
    assert sorted(p.name for p in removed) == ["choice8", "choice9"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"choice{age}" for age in range(8)]


def _image(shared_data: Path) -> np.ndarray:
    from sdpose_core.inference.predictor import load_image

    return load_image(shared_data.joinpath(*IMAGE))


def test_predictor_defaults_to_auto_and_says_what_ran(tiny: nn.Module, shared_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpose_core.inference.predictor import Predictor

    monkeypatch.delenv("SDPOSE_BACKEND", raising=False)
    image = _image(shared_data)
    auto = Predictor(tiny, detector=None)
    assert auto.backend == "auto"
    reference = Predictor(tiny, detector=None, backend="torch")
    for options in ({"cycles": 3}, {"cycles": 1, "flip": True}, {"cycles": 3, "dynamic": True}):
        result, fp32 = auto.predict(image, boxes=BOX, **options), reference.predict(image, boxes=BOX, **options)
        chosen = auto.planner.selection.chosen_for(options["cycles"])
        assert result.backend == chosen and "auto: fastest matching fp32" in result.backend_line
        assert result.to_dict()["backend_detail"] == result.backend_detail
        assert result.cycles_used == fp32.cycles_used
        ok, diff, peak, share = compare_heatmaps([h[None] for h in fp32.people[0].cycle_heatmaps],
                                                 [h[None] for h in result.people[0].cycle_heatmaps])
        assert ok, (options, chosen, diff, peak, share)
    two = auto.predict(image, boxes=BOX, cycles=2)  # no 2-cycle graph: torch, and the result says so
    assert two.backend == "torch" and "no 2-cycle graph" in two.backend_line
    assert any("no 2-cycle graph" in note for note in two.notes)
    assert "backend auto:" in auto.backend_status()


def test_a_failing_graph_hands_over_to_torch(tiny: nn.Module, shared_data: Path) -> None:
    from sdpose_core.inference.predictor import Predictor

    predictor = Predictor(tiny, detector=None, backend="auto")
    selection = predictor.select_backend()
    fastest = selection.chosen[1]
    selection.chosen[1] = "onnx-fp32"  # make the ONNX graph the one in use, whatever was fastest here
    try:
        image = _image(shared_data)
        assert predictor.predict(image, boxes=BOX, cycles=1).backend == "onnx-fp32"

        class Broken:
            def __call__(self, images, cycles=None):
                raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION")

        predictor.planner._graphs[("onnx-fp32", 1)] = Broken()
        result = predictor.predict(image, boxes=BOX, cycles=1)
        assert result.backend == "torch" and "failed" in result.backend_line and len(result.people) == 1
        assert any("RUNTIME_EXCEPTION" in note for note in result.notes)
        assert predictor.predict(image, boxes=BOX, cycles=1).backend == "torch"  # not tried again
    finally:
        selection.chosen[1] = fastest  # the selection is shared by this process's Predictors of these weights


def test_background_choice_lets_calls_run_on_torch_meanwhile(tiny: nn.Module, shared_data: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from sdpose_core.inference import backend as predict_backend
    from sdpose_core.inference.predictor import Predictor

    release = threading.Event()
    real = predict_backend.select_backend

    def held_back(*args, **kwargs):  # the measurement waits until the test has made its first call
        release.wait(60)
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_backend, "select_backend", held_back)
    predictor = Predictor(tiny, detector=None, backend="auto")
    assert predictor.start_backend_selection()
    early = predictor.predict(_image(shared_data), boxes=BOX, cycles=1)
    assert early.backend == "torch" and "still being chosen" in early.backend_line
    assert "still measuring" in predictor.backend_status()
    release.set()
    assert predictor.planner.wait(120) is not None
    late = predictor.predict(_image(shared_data), boxes=BOX, cycles=1)
    assert late.backend == predictor.planner.selection.chosen_for(1) and "auto:" in late.backend_line


def test_cli_predict_and_the_app_show_the_backend(tiny: nn.Module, shared_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.cli.main import main
    from sdpose_core.weights.checkpoint import save_pretrained

    weights = save_pretrained(tiny, tmp_path / "w")
    image = shared_data.joinpath(*IMAGE)
    common = [str(image), "--weights", str(weights), "--detector", "whole-image", "--no-progress"]
    assert main(["predict", *common, "--out", str(tmp_path / "a"), "--backend", "auto", "--cycles", "1"]) == 0
    err = capsys.readouterr().err
    assert "backend auto: " in err and "timing: 000000000785.jpg: pose" in err and "auto: fastest matching" in err
    assert main(["predict", *common, "--out", str(tmp_path / "t"), "--backend", "torch"]) == 0
    assert "backend: torch fp32" in capsys.readouterr().err

    gr = pytest.importorskip("gradio", reason="the app needs gradio")  # noqa: F841
    from app.context import AppContext
    from app.tabs.compare import timing_markdown
    from app.tabs.model import describe_weights
    from sdpose_core.inference.live import LiveSession, LiveSettings

    monkeypatch.delenv("SDPOSE_BACKEND", raising=False)
    ctx = AppContext(weights=str(weights))
    predictor = ctx.predictor()
    assert predictor.backend == "auto" and predictor.planner.wait(300) is not None  # chosen in the background
    summary = describe_weights(ctx)[1]
    assert "**Backend:** backend auto: " in summary and "How the backend was chosen" in summary
    result = predictor.predict(_image(shared_data), boxes=BOX, cycles=1)
    assert timing_markdown(result, "whole-image", 1.0).endswith(result.backend_line)
    frame = _image(shared_data)
    _, stats = LiveSession(LiveSettings(detector="whole-image")).process(frame, ctx)
    assert stats.backend.startswith("backend: ") and stats.backend in stats.markdown()
