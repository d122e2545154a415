"""The `sdpose` command line: help, models/flops listings, eval-preds against the reference numbers, a tiny
real train -> evaluate round trip, and bad input reported as "error: ..." with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdpose_core.cli.common import parse_override
from sdpose_core.cli.main import build_parser, main
from sdpose_core.paths import PROJECT_ROOT

SUBCOMMANDS = ("train", "evaluate", "eval-preds", "convert-official", "flops", "models")
TINY = ["--override", "patch_size=2,2", "--override", "dim=24", "--override", "depth=2", "--override", "heads=4"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "sdpose_core", *args], capture_output=True, text=True, env=env,
                          timeout=120)


# ----------------------------------------------------------------------------- help
def test_module_help_lists_every_subcommand() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for name in SUBCOMMANDS:
        assert name in done.stdout


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_subcommand_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"sdpose {name}" in capsys.readouterr().out


def test_override_parsing() -> None:
    assert parse_override("dim=24") == ("dim", 24)
    assert parse_override("patch_size=2,2") == ("patch_size", [2, 2])
    assert parse_override("image-size=[128, 96]") == ("image_size", [128, 96])
    assert parse_override("stem=stemnet") == ("stem", "stemnet")


def test_models_lists_variants_with_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"sdpose-t", "sdpose-s-v1", "sdpose-s-v2", "sdpose-b"}
    assert rows["sdpose-t"]["params"] == 4_398_528 and rows["sdpose-t"]["cycles"] == 3
    assert rows["sdpose-s-v2"]["params"] == 6_227_520 and rows["sdpose-s-v2"]["patch"] == [2, 2]


def test_flops_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops"]) == 0
    out = capsys.readouterr().out
    for name in ("sdpose-t", "sdpose-s-v1", "sdpose-s-v2"):
        assert name in out


# ------------------------------------------------------------------------ eval-preds
def test_eval_preds_reproduces_the_reference_coco_ap(shared_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder = shared_data / "coco" / "eval_example"
    out = tmp_path / "m.json"
    code = main(["eval-preds", "--ann", str(folder / "example_coco_val.json"),
                 "--preds", str(folder / "example_coco_preds.json"), "--dataset", "coco", "--out", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["AP"] == pytest.approx(0.86089, abs=1e-4)
    assert metrics["AP50"] == pytest.approx(0.99315, abs=1e-4)
    assert metrics["AR"] == pytest.approx(0.87500, abs=1e-4)
    assert "0.8609" in capsys.readouterr().out


def test_eval_preds_crowdpose_reference(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "crowdpose" / "eval_example"
    out = tmp_path / "m.json"
    assert main(["eval-preds", "--ann", str(folder / "example_crowdpose_val.json"),
                 "--preds", str(folder / "example_crowdpose_preds.json"), "--dataset", "crowdpose",
                 "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["AP"] == pytest.approx(0.78772, abs=1e-4)
    assert metrics["AP_hard"] == pytest.approx(0.4116, abs=1e-4)


# -------------------------------------------------------------------- train -> evaluate
def test_train_then_evaluate(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    ann, images = str(coco / "person_keypoints.json"), str(coco / "images")
    run = tmp_path / "run"
    assert main(["train", "--model", "sdpose-t", "--train-ann", ann, "--train-images", images, "--epochs", "1",
                 "--max-steps", "2", "--batch-size", "4", "--workers", "0", "--image-size", "64", "48",
                 "--cycles", "2", "--out", str(run), "--no-progress", *TINY]) == 0
    assert (run / "final" / "model.safetensors").is_file() and (run / "last.pt").is_file()
    assert "2 step(s)" in capsys.readouterr().out

    metrics_path = tmp_path / "metrics.json"
    assert main(["evaluate", "--weights", str(run / "final"), "--ann", ann, "--images", images,
                 "--out", str(metrics_path), "--save-preds", str(tmp_path / "preds")]) == 0
    printed = capsys.readouterr().out
    assert "cycle" in printed and "AP" in printed
    report = json.loads(metrics_path.read_text())
    assert sorted(report["metrics"]) == ["cycle1", "cycle2"]  # per-cycle AP: cycles default to the model's
    assert report["num_instances"] == 12 and report["boxes_kind"] == "GT"
    assert report["command"][:3] == ["sdpose", "evaluate", "--weights"]
    assert {"load_s", "inference_s", "eval_s", "total_s"} <= set(report["timings"])
    for values in report["metrics"].values():
        assert 0.0 <= values["AP"] <= 1.0

    # the saved predictions score the same through eval-preds
    scored = tmp_path / "scored.json"
    assert main(["eval-preds", "--ann", ann, "--preds", str(tmp_path / "preds_cycle1.json"), "--out", str(scored)]) == 0
    assert json.loads(scored.read_text())["metrics"]["AP"] == pytest.approx(report["metrics"]["cycle1"]["AP"])

    # a run's last.pt, detected boxes (rescoring + OKS-NMS), flip test and one cycle
    detections = str(coco / "person_detections.json")
    metrics_det = tmp_path / "det.json"
    assert main(["evaluate", "--weights", str(run / "last.pt"), "--ann", ann, "--images", images,
                 "--boxes", detections, "--flip", "--cycles", "1", "--out", str(metrics_det)]) == 0
    report = json.loads(metrics_det.read_text())
    assert list(report["metrics"]) == ["cycle1"] and report["boxes_kind"] == "detected" and report["flip"]


def test_resume_from_the_command_line_needs_only_the_run_dir(shared_data: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.train.state import load_train_state

    coco = shared_data / "coco" / "mmpose_coco"
    base = ["train", "--train-ann", str(coco / "person_keypoints.json"), "--train-images", str(coco / "images"),
            "--epochs", "2", "--batch-size", "4", "--workers", "0", "--image-size", "64", "48", "--no-progress", *TINY]
    assert main([*base, "--out", str(tmp_path / "straight")]) == 0
    assert main([*base, "--out", str(tmp_path / "run"), "--max-steps", "4"]) == 0
    assert load_train_state(tmp_path / "run" / "last.pt")["global_step"] == 4
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    assert "6 step(s)" in capsys.readouterr().out.splitlines()[-1]
    resumed, straight = load_train_state(tmp_path / "run" / "last.pt"), load_train_state(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(resumed["model"][k], straight["model"][k]) for k in straight["model"])


def test_evaluate_coco_model_on_crowdpose(shared_data: Path, tmp_path: Path) -> None:
    from sdpose_core.models import build_model
    from sdpose_core.weights.checkpoint import save_pretrained

    weights = save_pretrained(build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), cycles=1,
                                          patch_size=(2, 2), dim=24, depth=2, heads=4), tmp_path / "w")
    crowd = shared_data / "crowdpose" / "mmpose_crowdpose"
    out = tmp_path / "m.json"
    assert main(["evaluate", "--weights", str(weights), "--ann", str(crowd / "crowdpose.json"),
                 "--images", str(crowd / "images"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["dataset"] == "crowdpose" and "12 shared" in report["scoring"]
    assert "AP_hard" in report["metrics"]["cycle1"]


def test_convert_official_writes_our_format(reference_dir: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from sdpose_core.weights import load_pretrained

    assert main(["convert-official", str(reference_dir / "golden_sdpose_t.pt"), str(tmp_path / "t")]) == 0
    model = load_pretrained(str(tmp_path / "t"))
    golden = torch.load(reference_dir / "golden_sdpose_t.pt", weights_only=True)["state_dict"]
    assert model.config.name == "sdpose-t"
    assert torch.equal(model.keypoint_token, golden["keypoint_head.tokenpose.keypoint_token"])
    # a made-up config is no named variant: one clear error line, exit 2
    assert main(["convert-official", str(reference_dir / "golden_tiny.pt"), str(tmp_path / "tiny")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


# ------------------------------------------------------------------------ bad input
def test_bad_input_is_one_error_line_with_exit_2(tmp_path: Path) -> None:
    done = run_cli("eval-preds", "--ann", str(tmp_path / "missing.json"), "--preds", str(tmp_path / "p.json"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and "missing.json" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--model", "sdpose-xl", "--weights", "{w}", "--ann", "{ann}", "--images", "{img}"],
         "unknown model"),
        (["evaluate", "--weights", "{tmp}/nothing", "--ann", "{ann}", "--images", "{img}"], "not found"),
        (["train", "--train-ann", "{tmp}/none.json", "--train-images", "{img}", "--out", "{tmp}/r"], "none.json"),
        (["train", "--train-ann", "{ann}", "--out", "{tmp}/r"], "--train-images"),
        (["train", "--resume", "{tmp}/no_run"], "does not exist"),
        (["train", "--train-ann", "{ann}", "--train-images", "{img}", "--out", "{tmp}/r", "--epochs", "0"], "epochs"),
        (["eval-preds", "--ann", "{ann}", "--preds", "{ann}"], "must be a JSON list"),
        (["train", "--recipe", "nope"], "known: demo-default"),
        (["synthesize-crowd", "--base-ann", "{ann}", "--base-images", "{img}", "--out", "{tmp}/c", "--count", "1",
          "--exclude-donor-images", "{w}"], "not valid JSON"),
        (["synthesize-crowd", "--base-ann", "{ann}", "--base-images", "{img}", "--out", "{tmp}/c", "--count", "1",
          "--exclude-donor-images", "{tmp}/held_out.json"], "held_out.json does not exist"),
    ],
)
def test_bad_input_cases(args: list[str], message: str, shared_data: Path, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    fake_weights = tmp_path / "w.pth"
    fake_weights.write_bytes(b"not a checkpoint")
    values = {"ann": str(coco / "person_keypoints.json"), "img": str(coco / "images"), "tmp": str(tmp_path),
              "w": str(fake_weights)}
    code = main([a.format(**values) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err


def test_synthesize_crowd_never_pastes_people_of_the_excluded_images(shared_data: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    donors = json.loads((shared_data / "coco" / "coco_mini_train" / "person_keypoints.json").read_text())
    held_out = {"images": donors["images"][::2]}  # what --exclude-donor-images reads: the images' ids
    (tmp_path / "val.json").write_text(json.dumps(held_out))
    coco = shared_data / "coco" / "mmpose_coco"
    assert main(["synthesize-crowd", "--base-ann", str(coco / "person_keypoints.json"), "--base-images",
                 str(coco / "images"), "--out", str(tmp_path / "crowd"), "--count", "2",
                 "--exclude-donor-images", str(tmp_path / "val.json")]) == 0
    out = tmp_path / "crowd" / "person_keypoints.json"
    assert f"wrote {out}" in capsys.readouterr().out
    data = json.loads(out.read_text())
    excluded = sorted(int(im["id"]) for im in held_out["images"])
    assert data["info"]["sources"]["donors"]["excluded_image_ids"] == excluded
    used = {a["synthesis"]["donor_image_id"] for a in data["annotations"] if a["synthesis"]["source"] == "donor"}
    assert used and not used & set(excluded)


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["fly"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
