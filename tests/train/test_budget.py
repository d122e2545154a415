"""Step-based lr schedule, wall-time budget (`--time-budget`), validation every N minutes, and several training
sets on the command line.

Real runs use the tiny SDPose-T of test_train.py on the 12 people of coco/mmpose_coco (batch 4: 3 steps an
epoch), so a budget of a few seconds holds a few dozen steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_run import TINY, tiny_config

from sdpose_core.cli.main import build_parser, main
from sdpose_core.errors import ConfigError
from sdpose_core.train import TrainConfig, WarmupStepSchedule, train
from sdpose_core.train import schedule as schedule_module
from sdpose_core.train.recipes import config_from_options, load_recipe, train_sets_from_options
from sdpose_core.train.schedule import StepPlan, TimeBudget
from sdpose_core.train.state import load_train_state

pytestmark = pytest.mark.usefixtures("one_torch_thread")





def lr_factors(milestones: list[int], by: str, positions: list[tuple[int, int]], warmup: int) -> list[float]:
    optimizer = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1.0)
    schedule = WarmupStepSchedule(optimizer, milestones, 0.1, warmup, 0.001, by=by)
    return [schedule.factor(epoch, step) for epoch, step in positions]


# ---------------------------------------------------------------------------------- schedule
@pytest.mark.parametrize("epochs,fractions,warmup,steps_per_epoch", [
    (300, (200 / 300, 260 / 300), 500, 7),  # the official configs
    (4, (0.75,), 100, 53),  # the demo recipe's shape
    (30, (200 / 300, 260 / 300), 500, 40),
])
def test_step_schedule_without_budget_equals_the_epoch_schedule(epochs, fractions, warmup, steps_per_epoch) -> None:
    """Drops at the milestone epochs' first steps: the lr of every step of the run is the mmcv epoch rule's."""
    config = TrainConfig(out="x", train_ann="a", train_images="i", epochs=epochs, lr_step_fractions=fractions,
                         warmup_iters=warmup)
    plan = StepPlan.for_epochs(config.lr_step_epochs(), steps_per_epoch, epochs)
    assert plan.total_steps == epochs * steps_per_epoch and not plan.estimated
    positions = [(step // steps_per_epoch, step) for step in range(plan.total_steps)]
    by_step = lr_factors(plan.drop_steps, "step", positions, warmup)
    by_epoch = lr_factors(config.lr_step_epochs(), "epoch", positions, warmup)
    assert by_step == by_epoch
    assert len(set(by_step[warmup:])) == len(fractions) + 1  # every drop is reached (not a vacuous equality)


def test_reestimated_plan_drops_at_fractions_of_the_total_and_keeps_past_drops() -> None:
    fractions = (200 / 300, 260 / 300)
    plan = StepPlan.for_epochs([200, 260], 10, 300)
    plan.reestimate(fractions, 1000, steps_done=20)
    assert plan.drop_steps == [667, 867] and plan.total_steps == 1000 and plan.estimated
    plan.reestimate(fractions, 1200, steps_done=500)  # slower than thought: both drops move later
    assert plan.drop_steps == [800, 1040]
    plan.reestimate(fractions, 900, steps_done=850)  # the first drop was taken (step 800): it stays;
    assert plan.drop_steps == [800, 850]  # the second one's new place (780) lies in the past: it comes now
    factors = lr_factors(plan.drop_steps, "step", [(0, s) for s in (799, 800, 849, 850)], warmup=0)
    assert factors == pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert StepPlan.from_dict(plan.to_dict()) == plan


def test_time_budget_counts_step_time_and_estimates_the_total(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 3.0, 3.5, 4.0, 4.5, 5.0,  # start, then five steps: the first pays 3 s of start-up
                  100.0, 100.5])  # a pause (validation) between 5.0 and 100.0 is not training time
    monkeypatch.setattr(schedule_module.time, "perf_counter", lambda: next(clock))
    budget = TimeBudget(budget_s=10.0, val_every_s=4.0)
    budget.start()
    for _ in range(5):
        budget.step_done()
    assert budget.elapsed_s == pytest.approx(5.0) and budget.seconds_per_step() == pytest.approx(0.5)
    assert budget.estimate_total_steps(steps_done=5) == 5 + 10  # 5 s left at 0.5 s a step
    assert budget.validation_due() and not budget.spent
    budget.validated()
    budget.pause()
    budget.start()
    budget.step_done()
    assert budget.elapsed_s == pytest.approx(5.5) and not budget.validation_due()
    restored = TimeBudget(budget_s=10.0)
    restored.load_state_dict(budget.state_dict())
    assert restored.elapsed_s == pytest.approx(5.5) and restored.last_val_s == pytest.approx(5.0)


def test_budget_options_are_checked() -> None:
    for name in ("time_budget_min", "val_every_min"):
        with pytest.raises(ConfigError, match=name):
            TrainConfig(out="x", train_ann="a", train_images="i", **{name: 0})
        with pytest.raises(ConfigError, match=name):
            TrainConfig(out="x", train_ann="a", train_images="i", **{name: float("nan")})


# -------------------------------------------------------------------------------- real runs
def lr_at(record: dict, plan: dict, base_lr: float, warmup: int) -> float:
    step = record["step"] - 1  # the 0-based step the lr was set for
    factor = 0.1 ** sum(d <= step for d in plan["drop_steps"])
    if step < warmup:
        factor *= 1 - (1 - step / warmup) * (1 - 0.001)
    return base_lr * factor


def test_time_budget_run_ends_like_a_finished_run_and_resume_continues_it(shared_data: Path,
                                                                         tmp_path: Path) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    run = tmp_path / "run"
    val = {"val_ann": str(coco / "person_keypoints.json"), "val_images": str(coco / "images"), "val_every": 1000}
    config = tiny_config(shared_data, run, epochs=100_000, time_budget_min=2.5 / 60, val_every_min=1 / 60, **val)
    result = train(config)
    assert not result.interrupted and result.final_dir is not None and (run / "final" / "model.safetensors").is_file()
    state = load_train_state(run / "last.pt")
    elapsed = state["time_budget"]["elapsed_s"]
    assert 2.5 <= elapsed < 2.5 + 1.0  # stops at the first step boundary past the budget
    steps = state["global_step"]
    assert result.global_step == steps and 5 < steps < 100_000 * 3
    assert state["samples_seen"] == 4 * steps  # 3 full batches of 4 an epoch
    plan = state["lr_plan"]
    assert plan["estimated"] and abs(plan["total_steps"] - steps) <= max(3, steps // 3)
    for fraction, drop in zip(config.lr_step_fractions, plan["drop_steps"], strict=True):
        assert drop < steps or drop == round(fraction * plan["total_steps"])  # taken, or at its fraction
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    iters = [r for r in records if r["kind"] == "iter"]
    assert [r["step"] for r in iters] == list(range(1, steps + 1))
    # the lr each step trained at follows the stored plan (drops already taken never moved)
    for record in iters:
        assert record["lr"] == pytest.approx(lr_at(record, plan, config.lr, config.warmup_iters))
    assert iters[-1]["lr"] < config.lr  # the budget's drops happened inside the run
    # validation every second of training inside the 3-step epochs, and once at the end (val_every=1000)
    vals = [r for r in records if r["kind"] == "val" and r["cycle"] == 1]
    assert any(r.get("mid_epoch") for r in vals) and vals[-1]["step"] == steps and "OKS" in vals[-1]
    assert [r["samples_seen"] for r in vals] == sorted(r["samples_seen"] for r in vals)

    # a longer budget continues from last.pt: the elapsed time adds up, the taken drops stay
    resumed = train(TrainConfig.from_dict({**state["config"], "resume": str(run), "time_budget_min": 4 / 60}))
    again = load_train_state(run / "last.pt")
    assert again["time_budget"]["elapsed_s"] >= 4.0 > elapsed
    assert resumed.global_step == again["global_step"] > steps and again["samples_seen"] > state["samples_seen"]
    taken = [d for d in plan["drop_steps"] if d < steps]
    assert again["lr_plan"]["drop_steps"][:len(taken)] == taken
    # the same budget again: nothing left to train, the run just ends
    same = train(TrainConfig.from_dict({**again["config"], "resume": str(run)}))
    assert same.global_step == again["global_step"]


def test_budget_ending_mid_epoch_keeps_the_epoch_open(shared_data: Path, tmp_path: Path) -> None:
    """A budget spent inside an epoch validates and saves with the epoch unfinished, so a longer budget resumes
    it mid-epoch (the samples of the epoch not seen yet come next)."""
    run = tmp_path / "run"
    config = tiny_config(shared_data, run, epochs=100_000, batch_size=1, time_budget_min=1.5 / 60)
    train(config)
    state = load_train_state(run / "last.pt")
    steps, in_epoch = state["global_step"], state["step_in_epoch"]
    assert state["epoch"] == steps // 12 and in_epoch == steps % 12 and state["epoch_samples_seen"] == in_epoch
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert epochs[-1]["step"] == steps and bool(epochs[-1].get("partial_epoch")) == (in_epoch > 0)
    train(tiny_config(shared_data, run, epochs=100_000, batch_size=1, time_budget_min=2.5 / 60, resume=str(run)))
    new_iters = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()[len(records):]
                 if json.loads(x)["kind"] == "iter"]
    assert new_iters[0]["step"] == steps + 1 and new_iters[0]["epoch"] == state["epoch"] + 1


# ----------------------------------------------------------------------- command-line sets
def parse_train(argv: list[str]) -> dict:
    args = build_parser().parse_args(["train", *argv])
    return {k: v for k, v in vars(args).items() if k not in ("func", "command")}


def test_several_training_sets_pair_up_by_order_on_the_command_line(shared_data: Path, tmp_path: Path) -> None:
    coco = shared_data / "coco" / "mmpose_coco"
    ann, images = str(coco / "person_keypoints.json"), str(coco / "images")
    options = parse_train(["--train-ann", "a.json", "--train-images", "A/", "--train-repeat", "3",
                           "--train-ann", "b.json", "--train-ann", "c.json", "--train-images", "B/",
                           "--train-repeat", "2", "--train-images", "C/", "--out", str(tmp_path / "x")])
    config = config_from_options(options)
    assert (config.train_ann, config.train_images, config.train_repeat) == ("a.json", "A/", 3)
    assert config.extra_train_sets == [{"ann": "b.json", "images": "B/", "repeat": 1},
                                       {"ann": "c.json", "images": "C/", "repeat": 2}]
    with pytest.raises(ConfigError, match="2 --train-ann and 1 --train-images"):
        train_sets_from_options([("ann", "a"), ("images", "A"), ("ann", "b")])
    with pytest.raises(ConfigError, match="before it"):
        train_sets_from_options([("repeat", 2), ("ann", "a"), ("images", "A"), ("ann", "b"), ("images", "B")])
    # one option alone changes that field of a recipe's main set, the recipe's extra sets stay
    recipe = config_from_options({**parse_train(["--recipe", "demo-default", "--train-repeat", "4",
                                                 "--out", str(tmp_path / "d")])})
    assert recipe.train_repeat == 4 and recipe.extra_train_sets == load_recipe("demo-default", None)["extra_train_sets"]
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    assert "--train-repeat R" in help_text and "paired by order" in help_text and "--time-budget MIN" in help_text

    # a mismatch is an error message, not a traceback; a real run trains on both sets
    assert main(["train", "--train-ann", ann, "--train-images", images, "--train-ann", ann,
                 "--out", str(tmp_path / "bad")]) == 2
    run = tmp_path / "run"
    argv = ["train", "--train-ann", ann, "--train-images", images, "--train-repeat", "2", "--train-ann", ann,
            "--train-images", images, "--out", str(run), "--epochs", "1", "--batch-size", "12", "--workers", "0",
            "--image-size", "64", "48", "--no-progress", "--log-every", "1", "--warmup-iters", "2",
            *[x for key, value in TINY.items() for x in ("--override", f"{key}={json.dumps(value)}")]]
    assert main(argv) == 0
    saved = json.loads((run / "train_config.json").read_text())["train"]
    assert saved["train_repeat"] == 2 and saved["extra_train_sets"] == [{"ann": ann, "images": images, "repeat": 1}]
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"iter"' in x]
    assert steps == [1, 2, 3]  # 12 people x (2 + 1) copies / batch 12
