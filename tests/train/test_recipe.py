"""The demo recipe: real-GT split, mixed training sets with repeats, recipe files and auto-resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sdpose_core.cli.main import main
from sdpose_core.data.mixed import TrainSet, build_mixed_dataset
from sdpose_core.data.splits import write_demo_splits
from sdpose_core.errors import ConfigError
from sdpose_core.train.config import TrainConfig
from sdpose_core.train.recipes import load_recipe

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_demo_split_holds_out_real_people_without_overlap(shared_data: Path, tmp_path: Path) -> None:
    counts = write_demo_splits(tmp_path)
    train = json.loads((tmp_path / "real_train.json").read_text())
    val = json.loads((tmp_path / "real_val.json").read_text())
    train_ids = {im["id"] for im in train["images"]}
    val_ids = {im["id"] for im in val["images"]}
    assert not train_ids & val_ids
    assert set(counts["held_out_coco_mini_train_ids"]) <= val_ids
    assert counts["val_people"] >= 20 and counts["train_people"] >= 50
    for im in val["images"]:  # one image root (coco/) serves both sources
        assert (shared_data / "coco" / im["file_name"]).is_file()
    assert {a["image_id"] for a in train["annotations"]} <= train_ids


def test_mixed_dataset_repeats_with_different_augmentation(shared_data: Path) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    spec = TrainSet(str(coco / "person_keypoints.json"), str(coco / "images"), repeat=2)
    mixed = build_mixed_dataset([spec], seed=0, image_size=(64, 48), heatmap_size=(16, 12))
    half = len(mixed) // 2
    assert len(mixed) == 2 * len(mixed.parts[0]) and mixed.layout.name == "coco"
    a, b = mixed[0], mixed[half]
    assert a["meta"]["ann_id"] == b["meta"]["ann_id"]  # the same person ...
    assert not (a["image"] == b["image"]).all()  # ... cropped with a different augmentation


def test_recipe_files_load_and_bad_ones_are_named(tmp_path: Path) -> None:
    recipe = load_recipe("demo-default", None)
    assert recipe["cycles"] == 3 and recipe["image_size"] == [128, 96]
    assert "{data}" not in json.dumps(recipe) and "_about" not in recipe
    with pytest.raises(ConfigError, match="unknown recipe"):
        load_recipe("nope", None)
    from sdpose_core.train.recipes import RECIPES_DIR

    for shipped in sorted(RECIPES_DIR.glob("*.json")):  # every shipped recipe is a valid training config
        TrainConfig.from_dict(load_recipe(shipped.stem, None))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_recipe(None, str(bad))
    with pytest.raises(ConfigError, match="repeat"):
        TrainSet.from_dict({"ann": "a", "images": "b", "repeat": 0})


def test_config_run_trains_mixed_sets_and_resumes_by_rerunning(shared_data: Path, tmp_path: Path) -> None:
    cfg = {
        "model": "sdpose-t", "image_size": [64, 48], "cycles": 2,
        "model_overrides": {"patch_size": [2, 2], "dim": 24, "depth": 2, "heads": 4},
        "train_ann": "{data}/coco/mmpose_coco/person_keypoints.json", "train_images": "{data}/coco/mmpose_coco/images",
        "train_repeat": 2,
        "extra_train_sets": [
            {"ann": "{data}/coco/mmpose_coco/person_keypoints.json", "images": "{data}/coco/mmpose_coco/images"}],
        "epochs": 2, "batch_size": 8, "workers": 0, "warmup_iters": 2, "progress": False, "log_every": 1,
        "out": str(tmp_path / "run"),
    }
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    assert main(["train", "--config", str(path), "--max-steps", "3"]) == 0
    first = json.loads((tmp_path / "run" / "train_config.json").read_text())["train"]
    assert first["train_repeat"] == 2 and len(first["extra_train_sets"]) == 1
    # the same command again continues from last.pt instead of starting over
    assert main(["train", "--config", str(path)]) == 0
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [x["step"] for x in lines if x.get("kind") == "iter"]
    assert steps == list(range(1, 11))
    # 12 people x (2 + 1) copies = 36 samples / batch 8 -> 5 steps an epoch, 10 in all
    assert max(steps) == 10


@pytest.mark.slow
def test_sigterm_saves_state_and_the_rerun_finishes_like_an_uninterrupted_run(shared_data: Path,
                                                                               tmp_path: Path) -> None:
    """A long CPU run gets killed: SIGTERM finishes the step, writes last.pt and final/ (the weights so far),
    exits 0; the same command again continues mid-epoch and ends with exactly the weights of a run that was
    never stopped, in final/ again. A SIGKILL (no handler runs) with --save-every-min loses only the steps
    after the last mid-epoch last.pt: the rerun ends with the same weights too."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    from sdpose_core.train.state import load_train_state

    def config(out: Path, **extra: object) -> Path:
        cfg = {
            "model": "sdpose-t", "image_size": [64, 48], "cycles": 2,
            "model_overrides": {"patch_size": [2, 2], "dim": 24, "depth": 2, "heads": 4},
            "train_ann": "{data}/coco/mmpose_coco/person_keypoints.json",
            "train_images": "{data}/coco/mmpose_coco/images", "epochs": 40, "batch_size": 4, "workers": 0,
            "warmup_iters": 2, "progress": False, "log_every": 1, "val_every": 1000, "save_every": 1000,
            "out": str(out), **extra,
        }
        path = out.with_suffix(".json")
        path.write_text(json.dumps(cfg))
        return path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "SDPOSE_DATA": str(shared_data)}
    command = [sys.executable, "-m", "sdpose_core", "train", "--config"]
    stopped = tmp_path / "stopped"
    proc = subprocess.Popen([*command, str(config(stopped))], env=env, stdout=subprocess.PIPE, text=True)
    log = stopped / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and log.read_text().count('"iter"') >= 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "interrupted after" in out and f"weights so far in {stopped / 'final'}" in out
    at_stop = load_train_state(stopped / "last.pt")["model"]
    so_far = load_file(str(stopped / "final" / "model.safetensors"))
    assert so_far.keys() == at_stop.keys() and all(torch.equal(so_far[k], at_stop[k]) for k in so_far)
    steps_before = log.read_text().count('"iter"')
    assert steps_before < 40 * 3, "the run finished before the signal: make it longer"

    again = subprocess.run([*command, str(config(stopped))], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    whole = tmp_path / "whole"
    once = subprocess.run([*command, str(config(whole))], env=env, capture_output=True, text=True, timeout=300)
    assert once.returncode == 0, once.stderr
    a = load_file(str(stopped / "final" / "model.safetensors"))
    b = load_file(str(whole / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], so_far[k]) for k in a)  # the finished rerun wrote final/ again

    killed = tmp_path / "killed"
    proc = subprocess.Popen([*command, str(config(killed, save_every_min=0.0005))], env=env,
                            stdout=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not ((killed / "last.pt").is_file() and (killed / "metrics.jsonl").is_file()
                                          and (killed / "metrics.jsonl").read_text().count('"iter"') >= 7):
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (killed / "final").exists()
    state = load_train_state(killed / "last.pt")
    assert 0 < state["global_step"] < 40 * 3 and state["step_in_epoch"] > 0, "last.pt was not written mid-epoch"
    again = subprocess.run([*command, str(config(killed, save_every_min=0.0005))], env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    c = load_file(str(killed / "final" / "model.safetensors"))
    assert c.keys() == b.keys() and all(torch.equal(c[k], b[k]) for k in c)
