"""bf16 only where it is native: the CPU check, and training, evaluation and prediction following it.

The CPU is faked by pointing `sdpose_core.precision.CPUINFO_PATH` at a written cpuinfo file, once with and
once without the avx512_bf16 flag; everything else (training runs, evaluation, the Predictor) is real.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sdpose_core import precision

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
SAPPHIRE_RAPIDS = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx avx2 avx512f "
                   "avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n")
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics sve bf16 i8mm\n"
TINY = {"patch_size": (2, 2), "dim": 24, "depth": 2, "heads": 4}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fake_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """fake_cpu(cpuinfo_text): this process now reads that text as /proc/cpuinfo."""
    def use(text: str) -> None:
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO_PATH", path)
        precision._native_here.cache_clear()

    yield use
    precision._native_here.cache_clear()


def test_native_bf16_is_read_from_the_cpu_flags(fake_cpu) -> None:
    assert not precision.cpu_has_native_bf16(AVX2_ONLY)
    assert precision.cpu_has_native_bf16(SAPPHIRE_RAPIDS) and precision.cpu_has_native_bf16(GRAVITON3)
    fake_cpu(AVX2_ONLY)
    assert not precision.cpu_has_native_bf16() and precision.cpu_name() == "AMD EPYC"
    fake_cpu(SAPPHIRE_RAPIDS)
    assert precision.cpu_has_native_bf16() and "Xeon" in precision.cpu_description()


def test_cpu_summary_names_the_class_speed_figures_depend_on(fake_cpu) -> None:
    """Benchmarks and measurement scripts print this line: SIMD level, int8 dot product, bf16."""
    fake_cpu(AVX2_ONLY)
    assert precision.cpu_summary().endswith("AVX2, no VNNI, no native bf16")
    assert precision.cpu_summary().startswith("AMD EPYC, ") and not precision.cpu_has_int8_dot()
    fake_cpu(SAPPHIRE_RAPIDS)
    assert precision.cpu_summary().endswith("AVX-512, VNNI/AMX, native bf16") and precision.cpu_has_int8_dot()


def test_amp_resolves_to_bf16_only_where_native(fake_cpu) -> None:
    fake_cpu(AVX2_ONLY)
    for requested in (None, True):
        choice = precision.resolve_amp(requested, "cpu", "training")
        assert choice.dtype is None and "no native bf16" in choice.reason and "AMD EPYC" in choice.reason
    assert "asked for" in precision.resolve_amp(True, "cpu").reason
    fake_cpu(SAPPHIRE_RAPIDS)
    assert precision.resolve_amp(None, "cpu").dtype == torch.bfloat16
    assert precision.resolve_amp(True, "cpu", "evaluation").name == "bf16"
    assert precision.resolve_amp(False, "cpu").dtype is None  # --no-amp always wins


def _train(data: Path, out: Path, **changes):
    from sdpose_core.train import TrainConfig, train

    coco = data / "coco" / "mmpose_coco"
    config = TrainConfig(out=str(out), train_ann=str(coco / "person_keypoints.json"),
                         train_images=str(coco / "images"), epochs=1, batch_size=4, workers=0, image_size=(64, 48),
                         model_overrides=dict(TINY), progress=False, log_every=1, warmup_iters=2, seed=3,
                         max_steps=2, **changes)
    return train(config)


def test_training_with_amp_runs_fp32_without_native_bf16(shared_data: Path, tmp_path: Path, fake_cpu,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.train.state import load_train_state

    fake_cpu(AVX2_ONLY)
    _train(shared_data, tmp_path / "fp32", amp=True)  # what the demo recipe's "amp": true asks for
    log = capsys.readouterr().out
    assert "precision: training in fp32: bf16 was asked for, but this CPU (AMD EPYC" in log
    recorded = json.loads((tmp_path / "fp32" / "train_config.json").read_text())["precision"]
    assert recorded.startswith("training in fp32") and "no native bf16" in recorded
    # identical to a run that never asked for bf16: nothing was autocast
    _train(shared_data, tmp_path / "plain", amp=False)
    a, b = (load_train_state(tmp_path / name / "last.pt")["model"] for name in ("fp32", "plain"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_with_amp_uses_bf16_where_native(shared_data: Path, tmp_path: Path, fake_cpu,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.train.state import load_train_state

    fake_cpu(SAPPHIRE_RAPIDS)  # bf16 still runs here (emulated): only the choice is faked
    result = _train(shared_data, tmp_path / "bf16", amp=True)
    assert "precision: training under bf16 autocast" in capsys.readouterr().out and result.global_step == 2
    state = load_train_state(tmp_path / "bf16" / "last.pt")["model"]
    assert state["keypoint_token"].dtype == torch.float32  # weights stay fp32 under autocast
    _train(shared_data, tmp_path / "fp32", amp=False)
    plain = load_train_state(tmp_path / "fp32" / "last.pt")["model"]
    assert any(not torch.equal(state[k], plain[k]) for k in state)  # bf16 really ran


def test_evaluation_says_which_precision(shared_data: Path, tmp_path: Path, fake_cpu) -> None:
    from sdpose_core.evaluation.evaluate import run_evaluation
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    torch.manual_seed(0)
    weights = save_pretrained(build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), cycles=2, **TINY),
                              tmp_path / "w")
    coco = shared_data / "coco" / "mmpose_coco"
    args = (str(weights), str(coco / "person_keypoints.json"), str(coco / "images"))
    fake_cpu(AVX2_ONLY)
    report = run_evaluation(*args, device="cpu")
    assert report["precision"].startswith("evaluation in fp32") and "no native bf16" in report["precision"]
    forced = run_evaluation(*args, device="cpu", amp=True)
    assert forced["metrics"] == report["metrics"]  # --amp here is fp32 too
    fake_cpu(SAPPHIRE_RAPIDS)
    native = run_evaluation(*args, device="cpu")
    assert native["precision"].startswith("evaluation under bf16 autocast")
    assert run_evaluation(*args, device="cpu", amp=False)["precision"].startswith("evaluation in fp32")


def test_prediction_runs_bf16_only_where_native(shared_data: Path, fake_cpu) -> None:
    from sdpose_core.inference.predictor import Predictor, load_image
    from sdpose_core.models import build_model

    image = load_image(shared_data / "coco" / "mmpose_coco" / "images" / "000000000785.jpg")
    torch.manual_seed(0)
    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), **TINY).eval()
    boxes = [[280.0, 40.0, 200.0, 380.0]]
    fake_cpu(AVX2_ONLY)
    result = Predictor(model, detector=None, backend="torch-bf16").predict(image, boxes=boxes, cycles=1)
    assert result.backend == "torch" and "no native bf16" in result.backend_line
    assert any("no native bf16" in note for note in result.notes)
    fp32 = Predictor(model, detector=None, backend="torch").predict(image, boxes=boxes, cycles=1)
    np.testing.assert_array_equal(result.people[0].heatmaps, fp32.people[0].heatmaps)
    fake_cpu(SAPPHIRE_RAPIDS)
    native = Predictor(model, detector=None, backend="torch-bf16").predict(image, boxes=boxes, cycles=1)
    assert native.backend == "torch-bf16" and native.backend_line == "backend: torch bf16"
    difference = np.abs(native.people[0].heatmaps - fp32.people[0].heatmaps).max()
    assert 0 < difference < 0.05 * np.abs(fp32.people[0].heatmaps).max() + 1e-3  # bf16 ran, and stays close
