"""What a run leaves behind: mean OKS beside AP per cycle, best/ chosen on it, per-epoch snapshots, final/ after
SIGTERM, one console line per epoch, and resuming a last.pt written before these fields existed.

Runs use the tiny SDPose-T of test_train.py on the 12 people of coco/mmpose_coco (batch 4: 3 steps an epoch).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sdpose_core.errors import ConfigError
from sdpose_core.keypoints import TORSO_ORIENTATIONS
from sdpose_core.train import DistContext, TrainConfig, Trainer, train
from sdpose_core.train.epoch_summary import BestTracker
from sdpose_core.train.metrics_log import read_metrics, validation_curve
from sdpose_core.train.state import load_train_state, save_train_state
from sdpose_core.train.weights_folders import save_epoch_snapshot, save_weights_folder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
TINY = {"patch_size": (2, 2), "dim": 24, "depth": 2, "heads": 4}  # test_train.py's tiny SDPose-T


def tiny_config(data: Path, out: Path, validate: bool = True, **changes) -> TrainConfig:
    coco = data / "coco" / "mmpose_coco"
    values = dict(
        out=str(out), train_ann=str(coco / "person_keypoints.json"), train_images=str(coco / "images"),
        epochs=2, batch_size=4, workers=0, image_size=(64, 48), model_overrides=dict(TINY), progress=False,
        log_every=1, warmup_iters=4, seed=3, cycles=2,
    )
    if validate:
        values.update(val_ann=str(coco / "person_keypoints.json"), val_images=str(coco / "images"))
    values.update(changes)
    return TrainConfig(**values)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def records(run: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == kind]


# ------------------------------------------------------------------------------- mean OKS
def shifted_oks(gt: np.ndarray, area: float, sigmas: np.ndarray, shift: float) -> float:
    """COCOeval's OKS, written out, of a person whose every joint is `shift` px off in x and y."""
    labelled = gt[:, 2] > 0
    e = (2 * shift**2) / ((2 * sigmas) ** 2) / (area + np.spacing(1)) / 2
    return float(np.exp(-e)[labelled].mean())


@pytest.mark.parametrize("layout", ["coco", "crowdpose"])
def test_mean_oks_pairs_each_gt_person_with_the_prediction_on_its_box(shared_data: Path, tmp_path: Path,
                                                                      layout: str) -> None:
    from sdpose_core.data import TopDownDataset
    from sdpose_core.evaluation.loop import collect_predictions
    from sdpose_core.models import build_model
    from sdpose_core.train.validate import mean_gt_oks

    if layout == "coco":
        ann, images = shared_data / "coco" / "mmpose_coco" / "person_keypoints.json", shared_data / "coco" / "mmpose_coco" / "images"
    else:  # 6 LSP-extended people in CrowdPose order; their `area` is box w x h, CrowdPose's OKS scale w x h x 0.53
        source = json.loads((shared_data / "lsp_extended" / "crowdpose.json").read_text())
        ids = {im["id"] for im in source["images"][:6]}
        subset = {**source, "images": source["images"][:6],
                  "annotations": [a for a in source["annotations"] if a["image_id"] in ids]}
        ann, images = tmp_path / "lsp6.json", shared_data / "lsp_extended" / "images"
        ann.write_text(json.dumps(subset))
    dataset = TopDownDataset(ann, images, train=False, image_size=(64, 48), heatmap_size=(16, 12))
    num_keypoints = dataset.layout.num_keypoints
    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), num_keypoints=num_keypoints, **TINY)
    predictions = collect_predictions(model.eval(), dataset, cycles=2)
    random_init = mean_gt_oks(dataset, predictions)
    assert sorted(random_init) == [1, 2] and all(0.0 <= v < 0.5 for v in random_init.values())

    exact = copy.deepcopy(predictions)
    exact.keypoints = {1: dataset.samples.keypoints.copy()}
    assert mean_gt_oks(dataset, exact)[1] == pytest.approx(1.0)

    shift = 3.0
    moved = copy.deepcopy(exact)
    moved.keypoints[1][:, :, :2] += shift
    sigmas = dataset.layout.sigmas_array()
    expected = []
    for index, ann_id in enumerate(dataset.samples.ann_id):
        person = dataset.coco.anns[int(ann_id)]
        width, height = person["bbox"][2:]
        area = person["area"] if layout == "coco" else width * height * 0.53
        expected.append(shifted_oks(dataset.samples.keypoints[index], area, sigmas, shift))
    assert mean_gt_oks(dataset, moved)[1] == pytest.approx(float(np.mean(expected)), rel=1e-9)
    assert 0.05 < float(np.mean(expected)) < 0.99  # the shift matters, but not all the way

    swapped = copy.deepcopy(exact)  # each person scored against the NEXT person's box: the pairing matters
    swapped.keypoints[1] = np.roll(swapped.keypoints[1], 1, axis=0)
    assert mean_gt_oks(dataset, swapped)[1] < 0.5


# --------------------------------------------------------------- best/ on OKS, snapshots, logs
def test_best_follows_cycle1_mean_oks_and_epoch_snapshots_rotate(shared_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(shared_data, run, epochs=3, keep_last_epochs=3))
    oks = [r["val_OKS_cycle1"] for r in result.history]
    assert len(set(oks)) == 3 and all(0.0 <= v <= 1.0 for v in oks)  # it moves from epoch to epoch
    best_epoch = int(np.argmax(oks)) + 1
    assert (result.best_metric, result.best_epoch, result.best_value) == ("oks", best_epoch, max(oks))
    assert result.best_ap == max(r["val_AP_cycle1"] for r in result.history)
    snapshots = sorted(p.name for p in (run / "epochs").iterdir())
    assert snapshots == ["epoch_001", "epoch_002", "epoch_003"]
    assert same_weights(weights(run / "best"), weights(run / "epochs" / f"epoch_{best_epoch:03d}"))
    assert same_weights(weights(run / "final"), weights(run / "epochs" / "epoch_003"))
    assert not same_weights(weights(run / "epochs" / "epoch_001"), weights(run / "epochs" / "epoch_003"))

    # the logs carry AP, AP50 and mean OKS per cycle
    val = records(run, "val")
    assert [r["cycle"] for r in val] == [1, 2] * 3
    assert [r["OKS"] for r in val if r["cycle"] == 1] == oks and all("AP50" in r for r in val)
    header = (run / "train_epochs.csv").read_text().splitlines()[0].split(",")
    assert {f"val_{m}_cycle{c}" for m in ("AP", "AP50", "OKS") for c in (1, 2)} <= set(header)

    # the curve scripts/training_curve.py prints: a point per validation with each cycle's record and the lr
    curve = validation_curve(read_metrics(run))
    assert [p["cycles"][1]["OKS"] for p in curve] == oks and all(set(p["cycles"]) == {1, 2} for p in curve)
    assert [p["samples"] for p in curve] == [12, 24, 36] and curve[-1]["lr"] == records(run, "iter")[-1]["lr"]
    printed = subprocess.run([sys.executable, str(SCRIPTS / "training_curve.py"), str(run), "--fit-until-min", "1e9",
                              "--target-oks", "0.99"], capture_output=True, text=True, check=True).stdout
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 4 and all(f"| {value:.3f} |" in row for value, row in zip(oks, rows[1:], strict=True))
    assert "fits over 3 validations up to 1e+09 min" in printed and printed.count("OKS 0.99") == 2
    # scripts/plateau_diagnosis.py on the final weights: a row per split and cycle whose error-class shares add up
    # to 1, and every val person in one orientation row
    coco = shared_data / "coco" / "mmpose_coco"
    sets = [str(coco / "person_keypoints.json"), str(coco / "images")]
    printed = subprocess.run([sys.executable, str(SCRIPTS / "plateau_diagnosis.py"), "--weights", str(run / "final"),
                              "--val-ann", *sets[:1], "--val-images", sets[1], "--train-ann", sets[0],
                              "--train-images", sets[1]], capture_output=True, text=True, check=True).stdout
    split_rows = [line.split(" | ") for line in printed.splitlines() if line.startswith(("| val |", "| train |"))]
    assert [(r[0], r[1]) for r in split_rows] == [("| val", "1"), ("| val", "2"), ("| train", "1"), ("| train", "2")]
    assert all(abs(sum(float(v.strip(" |")) for v in r[7:12]) - 1) < 0.03 for r in split_rows)
    table = printed.split("by the GT torso orientation")[1]
    people = [int(line.split(" | ")[1].split()[0]) for line in table.splitlines() if line.startswith("| ") and
              line.split(" | ")[0][2:] in TORSO_ORIENTATIONS]
    assert sum(people) == int(split_rows[0][2])
    state = load_train_state(run / "last.pt")
    assert (state["best_metric"], state["best_epoch"], state["best_oks"]) == ("oks", best_epoch, max(oks))

    # resumed for one more epoch with --keep-last-epochs 1: only the newest snapshot stays, no temp folders
    train(tiny_config(shared_data, run, epochs=4, keep_last_epochs=1, resume=str(run)))
    assert [p.name for p in (run / "epochs").iterdir()] == ["epoch_004"]
    assert not [p for p in run.rglob(".*") if p.name.startswith((".writing-", ".replaced-"))]


def test_best_metric_ap_keeps_the_old_choice(shared_data: Path, tmp_path: Path) -> None:
    result = train(tiny_config(shared_data, tmp_path / "run", best_metric="ap"))
    aps = [r["val_AP_cycle1"] for r in result.history]
    assert result.best_metric == "ap" and result.best_epoch == int(np.argmax(aps)) + 1
    assert result.best_value == result.best_ap == max(aps)
    assert not (tmp_path / "run" / "epochs").exists()  # keep_last_epochs=0: no snapshots


def test_weights_folders_replace_atomically_and_drop_stale_snapshots(tmp_path: Path) -> None:
    from sdpose_core.models import build_model

    model = build_model("sdpose-t", image_size=(64, 48), heatmap_size=(16, 12), **TINY)
    (tmp_path / ".writing-final").mkdir()  # left by a run killed while it saved
    (tmp_path / ".writing-final" / "model.safetensors").write_bytes(b"half a file")
    save_weights_folder(model, tmp_path / "final")
    with torch.no_grad():
        model.keypoint_token.add_(1.0)
    save_weights_folder(model, tmp_path / "final")  # replaces the folder there
    assert torch.equal(weights(tmp_path / "final")["keypoint_token"], model.keypoint_token.detach())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]

    for epoch in (1, 2, 7):  # epoch 7: written before a crash, the resumed run redoes epochs 3..7
        save_epoch_snapshot(model, tmp_path, epoch, keep=5)
    save_epoch_snapshot(model, tmp_path, 3, keep=2)
    assert sorted(p.name for p in (tmp_path / "epochs").iterdir()) == ["epoch_002", "epoch_003"]


def test_config_rejects_bad_best_metric_and_snapshot_count() -> None:
    with pytest.raises(ConfigError, match="best_metric"):
        TrainConfig(out="x", train_ann="a", train_images="i", best_metric="loss")
    with pytest.raises(ConfigError, match="keep_last_epochs"):
        TrainConfig(out="x", train_ann="a", train_images="i", keep_last_epochs=-1)


def test_cli_flags_fill_the_config() -> None:
    from sdpose_core.cli.main import build_parser
    from sdpose_core.train.recipes import config_from_options

    args = build_parser().parse_args(["train", "--train-ann", "a", "--train-images", "i", "--out", "o",
                                      "--best-metric", "ap", "--keep-last-epochs", "3", "--no-progress"])
    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    config = config_from_options(given)
    assert (config.best_metric, config.keep_last_epochs, config.progress) == ("ap", 3, False)


# ----------------------------------------------------------------------------- resume
def test_resume_from_a_last_pt_without_the_new_fields(shared_data: Path, tmp_path: Path) -> None:
    """A last.pt from before best_metric: best/ was chosen on AP; resuming on AP carries it on, on OKS starts
    the choice afresh (the highest AP seen is kept either way)."""
    run = tmp_path / "run"
    from sdpose_core.train.recipes import config_from_options

    first = train(tiny_config(shared_data, run, epochs=1))
    state = load_train_state(run / "last.pt")
    for key in ("best_metric", "best_value", "best_oks"):
        del state[key]
    for key in ("best_metric", "keep_last_epochs"):
        del state["config"][key]
    state["best_ap"] = 0.5  # as if epoch 1 had scored AP 0.5: a tiny model's next epoch does not beat it
    save_train_state(run / "last.pt", state)
    old = dict(state)

    # through the CLI's path: the saved config (without the new fields) with the options given on top
    on_ap = Trainer(config_from_options({"resume": str(run), "epochs": 2, "best_metric": "ap"}), DistContext())
    assert (on_ap.best.metric, on_ap.best.value, on_ap.best.epoch) == ("ap", 0.5, first.best_epoch)
    resumed = on_ap.run()
    assert resumed.epochs_completed == 2 and resumed.best_epoch == 1 and resumed.best_value == 0.5

    save_train_state(run / "last.pt", old)  # back to the old file: now resumed with the default, OKS
    on_oks = train(config_from_options({"resume": str(run), "epochs": 2}))
    assert on_oks.best_metric == "oks" and on_oks.best_epoch == 2 and on_oks.best_ap == 0.5
    assert on_oks.best_value == on_oks.history[-1]["val_OKS_cycle1"]


def test_best_tracker_from_old_and_new_states() -> None:
    assert BestTracker.from_state({}, "oks") == BestTracker("oks")
    old = {"best_ap": 0.3, "best_epoch": 4}
    assert BestTracker.from_state(old, "ap") == BestTracker("ap", 0.3, 4, 0.3, None)
    assert BestTracker.from_state(old, "oks") == BestTracker("oks", None, None, 0.3, None)
    tracker = BestTracker("oks")
    assert tracker.update(1, {"AP": 0.0, "OKS": 0.2}) and not tracker.update(2, {"AP": 0.1, "OKS": 0.2})
    assert (tracker.epoch, tracker.value, tracker.best_ap, tracker.best_oks) == (1, 0.2, 0.1, 0.2)
    assert BestTracker.from_state(tracker.to_state(), "oks") == tracker


# ----------------------------------------------------------------------------- signals
def test_sigterm_writes_final_and_last_pt_and_a_resumed_run_overwrites_final(shared_data: Path,
                                                                              tmp_path: Path) -> None:
    straight = train(tiny_config(shared_data, tmp_path / "straight", validate=False, epochs=1))
    run = tmp_path / "run"
    trainer = Trainer(tiny_config(shared_data, run, validate=False, epochs=1), DistContext())
    plain_step = trainer.train_step

    def step_then_sigterm(batch: dict) -> dict:
        losses = plain_step(batch)
        if trainer.global_step == 1:  # the real signal, delivered to this process between two steps
            os.kill(os.getpid(), signal.SIGTERM)
        return losses

    trainer.train_step = step_then_sigterm  # type: ignore[method-assign]
    handler_before = signal.getsignal(signal.SIGTERM)
    stopped = trainer.run()
    assert stopped.interrupted and stopped.final_dir == run / "final" and stopped.global_step == 2
    state = load_train_state(run / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (0, 2)
    assert same_weights(weights(run / "final"), state["model"])
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the run's handler is put back

    resumed = train(tiny_config(shared_data, run, validate=False, epochs=1, resume=str(run)))
    assert not resumed.interrupted and resumed.global_step == straight.global_step == 3
    assert same_weights(weights(run / "final"), weights(tmp_path / "straight" / "final"))
    assert not same_weights(weights(run / "final"), state["model"])


# ----------------------------------------------------------------------------- console
EPOCH_LINE = re.compile(
    r"\[sdpose train\] epoch (\d+)/(\d+)  step (\d+)  samples (\d+)  loss (\S+)  lr (\S+)  (\S+) s \((\d+) samples/s\)"
    r"(?:  val c1 AP (\S+) OKS (\S+) \| c2 AP (\S+) OKS (\S+))?(?:  best oks (\S+) \(epoch (\d+)\))?$"
)


@pytest.mark.parametrize("progress", [False, True])
def test_one_console_line_per_epoch(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                    progress: bool) -> None:
    result = train(tiny_config(shared_data, tmp_path / "run", epochs=2, val_every=2, progress=progress))
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith("[sdpose train] epoch")]
    assert len(lines) == 2, captured.out
    first, second = (EPOCH_LINE.match(line) for line in lines)
    assert first and second, lines
    assert first.group(1, 2, 3, 4) == ("1", "2", "3", "12") and first.group(9) is None  # no validation in epoch 1
    assert first.group(13) is None  # nothing chosen for best/ yet
    assert second.group(1, 3, 4) == ("2", "6", "24")
    record = result.history[-1]
    assert float(second.group(5)) == pytest.approx(record["train_loss"], rel=1e-2)
    assert float(second.group(6)) == pytest.approx(record["lr"], rel=0.06)
    assert [float(second.group(g)) for g in (9, 10, 11, 12)] == pytest.approx(
        [record["val_AP_cycle1"], record["val_OKS_cycle1"], record["val_AP_cycle2"], record["val_OKS_cycle2"]],
        abs=6e-4)
    assert (float(second.group(13)), int(second.group(14))) == (pytest.approx(result.best_value, abs=6e-4), 2)
    assert math.isnan(result.history[0]["val_OKS_cycle1"])
    if progress:  # the bar went to stderr and was cleared (leave=False); stdout has only the lines
        assert "batch" in captured.err and "batch" not in captured.out
