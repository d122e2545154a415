"""From command-line options to a `TrainConfig`: shipped recipes (`sdpose_core/recipes/*.json`), JSON config
files, and resuming a run (its saved settings, with the options given again on top).

A recipe run that was interrupted carries on when the same command is run again: when the run folder already
holds `last.pt`, the options are treated as `--resume RUN_DIR`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sdpose_core.errors import ConfigError
from sdpose_core.paths import PACKAGE_DIR, data_root
from sdpose_core.train.config import TrainConfig

RECIPES_DIR = PACKAGE_DIR / "recipes"
REQUIRED_OPTIONS = ("train_ann", "train_images", "out")  # of a new run (not resumed)


def config_from_options(options: dict[str, Any]) -> TrainConfig:
    """The run's TrainConfig from the options given (TrainConfig fields plus `recipe` / `config`, only those
    given): a new run (recipe or config file, options on top), or a resumed one (`resume`, or a recipe
    whose run folder already holds last.pt)."""
    given = dict(options)
    if "train_set_options" in given:
        given.update(train_sets_from_options(given.pop("train_set_options")))
    if "model_overrides" in given:
        given["model_overrides"] = dict(given["model_overrides"])
    recipe = load_recipe(given.pop("recipe", None), given.pop("config", None))
    if "resume" in given:
        return resume_config(given)
    if recipe and (Path(given.get("out", recipe.get("out", ""))) / "last.pt").is_file():
        given["resume"] = str(Path(given.get("out", recipe["out"])))
        return resume_config(given)
    given = {**recipe, **given}
    missing = [f"--{k.replace('_', '-')}" for k in REQUIRED_OPTIONS if k not in given]
    if missing:
        raise ConfigError(f"train needs {', '.join(missing)} (or --resume RUN_DIR, or --recipe NAME)")
    return TrainConfig.from_dict(given)


def train_sets_from_options(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """TrainConfig fields from the command line's training sets, in the order given: the n-th --train-ann goes
    with the n-th --train-images; a --train-repeat applies to the --train-ann before it. The first pair is the
    main set, the others become `extra_train_sets` (replacing a recipe's only when more than one is given).
    One option alone (no pair) changes that field of the main set of a recipe or a resumed run."""
    anns = [value for kind, value in items if kind == "ann"]
    images = [value for kind, value in items if kind == "images"]
    if len(anns) + len(images) == 1 or not (anns or images):
        single = {"ann": "train_ann", "images": "train_images", "repeat": "train_repeat"}
        if sum(kind == "repeat" for kind, _ in items) > 1:
            raise ConfigError("one --train-repeat per --train-ann")
        return {single[kind]: (int(value) if kind == "repeat" else value) for kind, value in items}
    if len(anns) != len(images):
        raise ConfigError(
            f"--train-ann and --train-images pair up by order: got {len(anns)} --train-ann and {len(images)} "
            "--train-images; give one --train-images after each --train-ann"
        )
    repeats: list[int | None] = [None] * len(anns)
    seen_anns = 0
    for kind, value in items:
        if kind == "ann":
            seen_anns += 1
        elif kind == "repeat":
            if seen_anns == 0:
                raise ConfigError("--train-repeat applies to the --train-ann before it: give --train-ann first")
            if repeats[seen_anns - 1] is not None:
                raise ConfigError(f"two --train-repeat for the training set {anns[seen_anns - 1]}")
            repeats[seen_anns - 1] = int(value)
    fields: dict[str, Any] = {}
    if anns:
        fields.update(train_ann=anns[0], train_images=images[0])
        if repeats[0] is not None:
            fields["train_repeat"] = repeats[0]
    if len(anns) > 1:
        fields["extra_train_sets"] = [
            {"ann": ann, "images": folder, "repeat": 1 if repeat is None else repeat}
            for ann, folder, repeat in zip(anns[1:], images[1:], repeats[1:], strict=True)
        ]
    return fields


def load_recipe(recipe: str | None, config_file: str | None) -> dict[str, Any]:
    """Training settings from a shipped recipe or a JSON file; "{data}" in paths is the shared data root."""
    if recipe and config_file:
        raise ConfigError("give --recipe or --config, not both")
    if not recipe and not config_file:
        return {}
    if recipe:
        path = RECIPES_DIR / f"{recipe}.json"
        if not path.is_file():
            known = sorted(p.stem for p in RECIPES_DIR.glob("*.json"))
            raise ConfigError(f"unknown recipe {recipe!r}; known: {', '.join(known)}")
    else:
        path = Path(config_file)  # type: ignore[arg-type]
        if not path.is_file():
            raise ConfigError(f"training config {path} does not exist")
    try:
        settings = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    root = str(data_root())

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{data}", root)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return {k: fill(v) for k, v in settings.items() if not k.startswith("_")}


def resume_config(given: dict[str, Any]) -> TrainConfig:
    """The saved run's TrainConfig with the options given on this command line on top."""
    from sdpose_core.train.state import load_train_state

    resume_path = Path(given["resume"])
    state = load_train_state(resume_path)
    saved = dict(state["config"])
    saved["out"] = str(resume_path if resume_path.is_dir() else resume_path.parent)
    # a smoke-test limit of the interrupted run is not inherited: resuming means "carry on"
    saved["max_steps"] = None
    saved.update(given)
    return TrainConfig.from_dict(saved)
