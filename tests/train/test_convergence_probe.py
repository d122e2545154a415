"""scripts/convergence_probe.py: two candidates for a few seconds of training each on the tiny shared COCO sets,
one table (CPU in the header), resume-safe reruns, candidates with options this checkout lacks skipped."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdpose_core.precision import cpu_summary

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "convergence_probe.py"
TINY = '{"patch_size": [2, 2], "dim": 24, "depth": 2, "heads": 4}'


def load_probe():
    spec = importlib.util.spec_from_file_location("convergence_probe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def probe_argv(data: Path, out: Path, candidates: str) -> list[str]:
    coco = data / "coco" / "mmpose_coco"
    return ["--train-ann", str(coco / "person_keypoints.json"), "--train-images", str(coco / "images"),
            "--val-ann", str(coco / "person_keypoints.json"), "--val-images", str(coco / "images"),
            "--minutes", str(3 / 60), "--candidates", candidates, "--out", str(out), "--threads", "1",
            "--set", "image_size=[64,48]", "--set", f"model_overrides={TINY}", "--set", "workers=0",
            "--set", "batch_size=4", "--set", "val_every=1000"]


def test_probe_arguments_are_checked(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    probe = load_probe()
    coco = shared_data / "coco" / "mmpose_coco"
    argv = probe_argv(shared_data, tmp_path, "current")
    assert probe.main(argv[2:]) == 2  # no training data
    assert "needs training data" in capsys.readouterr().err
    assert probe.main([*argv, "--train-ann", str(coco / "person_keypoints.json")]) == 2  # 2 anns, 1 images
    assert "pair up by order" in capsys.readouterr().err
    assert not (tmp_path / "current").exists()


@pytest.mark.slow
def test_probe_trains_candidates_for_the_same_time_and_reruns_resume(
        shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    probe = load_probe()
    out = tmp_path / "probe"
    # a probe killed inside its first candidate: the run saves last.pt, the probe exits without a result
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.Popen([sys.executable, str(SCRIPT), *probe_argv(shared_data, out, "current,bs16")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "current" / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and '"iter"' in log.read_text()):
        time.sleep(0.05)
    killed.send_signal(signal.SIGTERM)
    _, err = killed.communicate(timeout=120)
    assert killed.returncode == 130 and "run the same command to continue" in err
    assert (out / "current" / "run" / "last.pt").is_file() and not (out / "current" / "result.json").exists()
    assert not (out / "bs16").exists()

    monkeypatch.setitem(probe.CANDIDATES, "future-option", {"no_such_training_option": 1})
    assert probe.main(probe_argv(shared_data, out, "current,bs16,future-option")) == 0
    printed = capsys.readouterr().out
    assert "current continues" in printed and "bs16 trains" in printed
    assert f"# CPU: {cpu_summary()}" in printed and "skip future-option: TrainConfig has no no_such_training_option" \
        in printed
    report = json.loads((out / "probe.json").read_text())
    rows = {r["candidate"]: r for r in report["results"]}
    assert set(rows) == {"current", "bs16"} and "future-option" in report["skipped"]
    for name, row in rows.items():
        assert row["train_minutes"] >= 3 / 60 and row["steps"] > 0 and row["samples"] > 0
        assert row["samples_per_s"] == pytest.approx(row["samples"] / (row["train_minutes"] * 60))
        assert all(0.0 <= row[k] <= 1.0 for k in ("OKS_c1", "OKS_cN", "AP_c1", "AP_cN"))
        assert row["train_loss"] > 0 and row["curve"][-1]["step"] == row["steps"]
        assert row["cycles"] == 3 and f"| {name} |" in (out / "probe.md").read_text()
    config = json.loads((out / "bs16" / "config.json").read_text())
    assert config["batch_size"] == 16 and config["time_budget_min"] == pytest.approx(3 / 60)
    assert json.loads((out / "current" / "config.json").read_text())["batch_size"] == 4  # --set on top of recipe

    # a rerun trains nothing again
    metrics = log.read_text()
    assert probe.main(probe_argv(shared_data, out, "current,bs16")) == 0
    printed = capsys.readouterr().out
    assert "current: done before" in printed and "bs16: done before" in printed
    assert log.read_text() == metrics
    again = {r["candidate"]: r for r in json.loads((out / "probe.json").read_text())["results"]}
    assert again == rows
