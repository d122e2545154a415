"""Convergence probe: train several candidate settings for the same training time on the same data, one table.

    OMP_WAIT_POLICY=PASSIVE python scripts/convergence_probe.py --minutes 20 \\
        --train-ann runs/data/real_train.json --train-images ../shared/data/coco/coco_mini_train/images \\
        --val-ann runs/data/real_val.json --val-images ../shared/data/coco --candidates current,warmup500,lr2e-3

Every candidate is the demo recipe's training settings (`sdpose_core/recipes/demo-default.json`: SDPose-T 128x96,
3 cycles, batch 32, Adam 1e-3, warm-up 100, one x0.1 drop at 3/4) with a few TrainConfig fields changed
(`CANDIDATES`), trained by `python -m sdpose_core train --config` with `time_budget_min = --minutes` (training
time; validation is not counted) in its own run folder under --out. Validation on the --val split (GT boxes)
runs at each epoch end, every --val-every-min minutes of training if given, and at the end of the budget.

The table: samples and steps trained, the final train loss (mean over the last 10 % of the steps), mean OKS and
AP of cycle 1 and of the last cycle at the end, samples/s of training. --out gets probe.json (the table, each
candidate's OKS/AP-vs-samples curve and the settings) and probe.md. A candidate whose result.json exists is not
run again, and a killed probe continues the interrupted candidate from its last.pt: run the same command again.
Candidates whose options are not in this checkout's TrainConfig are skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sdpose_core.cli.common import format_table, parse_override  # noqa: E402
from sdpose_core.cli.train import TrainSetOption  # noqa: E402
from sdpose_core.errors import SDPoseError  # noqa: E402
from sdpose_core.precision import cpu_summary  # noqa: E402
from sdpose_core.train.config import TrainConfig  # noqa: E402
from sdpose_core.train.metrics_log import read_metrics, validation_curve  # noqa: E402
from sdpose_core.train.recipes import load_recipe, train_sets_from_options  # noqa: E402

# the demo recipe's training settings that every candidate starts from (its data and run folder are not used)
RECIPE_KEYS = ("model", "image_size", "cycles", "batch_size", "lr", "warmup_iters", "lr_step_fractions", "amp",
               "workers")
CANDIDATES: dict[str, dict[str, Any]] = {
    "current": {},
    # the same settings once more, later: how far the table's rows move from run to run (machine speed, timing)
    "current-again": {},
    "warmup500": {"warmup_iters": 500},
    "lr2e-3": {"lr": 2e-3},
    "bs16": {"batch_size": 16},
    "kl": {"heatmap_loss": "kl"},
    "fg-mse": {"heatmap_loss": "fg-mse"},
    "sigma4to2": {"sigma_start": 4.0},  # sigma 4 -> 2 over the first sigma_anneal_fraction of the steps
    "teacher": {"teacher_targets": "pp-tinypose-128x96"},
    "teacher256": {"teacher_targets": "pp-tinypose-256x192"},  # the larger teacher: slower targets, better peaks
    "teacher-kl": {"teacher_targets": "pp-tinypose-128x96", "heatmap_loss": "kl"},
    # keypoint-token attention (block 1, cycle 1) pulled to its joint's patch, fading out over the run
    "attn-hint": {"attention_hint_weight": 0.01, "attention_hint_fraction": 1.0},
    "attn-hint0.1": {"attention_hint_weight": 0.1, "attention_hint_fraction": 1.0},
    "single-cycle": {"single_cycle_fraction": 0.5},  # cycle 1 alone for the first half (1.76x samples/s here)
    # visual tokens regress PP-TinyPose's last features (the teacher runs in the workers; its heatmaps unused)
    "feature-hint": {"teacher_targets": "pp-tinypose-128x96", "teacher_target_weight": 0.0,
                     "teacher_feature_weight": 0.1},
    "hint+single": {"attention_hint_weight": 0.01, "attention_hint_fraction": 0.5, "single_cycle_fraction": 0.5},
    # the lr drop is the largest single gain of every long run so far: take it at half-time instead of 3/4
    "lr-drop-0.5": {"lr_step_fractions": [0.5]},
    # samples/s hardly depends on the batch on a 2-core CPU (8: 8.5, 32: 8.9 with 3 cycles), so a smaller batch
    # buys 4x the optimiser steps for the same samples
    "bs8": {"batch_size": 8},
    "bs8-lr5e-4": {"batch_size": 8, "lr": 5e-4},
    "bs4": {"batch_size": 4},
    "bs8-lr2e-3": {"batch_size": 8, "lr": 2e-3},
    "bs8-noaug": {"batch_size": 8, "augment": False},  # rules the augmentation out (DEVELOPERS.md)
    # BN makes the stem convs scale-free, so Adam's ~lr steps are huge relative to the official N(0, 0.001)
    # weights; He init starts them ~50x larger (sdpose_core.models.stems.init_conv_bn)
    "kaiming": {"stem_init": "kaiming"},
    "kaiming-bs8": {"stem_init": "kaiming", "batch_size": 8},
    "kaiming-64x48": {"stem_init": "kaiming", "image_size": [64, 48]},  # ~4x the samples/s, 16 tokens
    "64x48": {"image_size": [64, 48]},
    "noaug": {"augment": False},  # the current recipe with the augmentation off (DEVELOPERS.md: rule the data out)
    "bs8+feature-hint": {"batch_size": 8, "teacher_targets": "pp-tinypose-128x96", "teacher_target_weight": 0.0,
                         "teacher_feature_weight": 0.1},
}
COLUMNS = ("candidate", "changes", "samples", "steps", "train_loss", "OKS_c1", "OKS_cN", "AP_c1", "AP_cN",
           "samples_per_s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-ann", dest="train_set_options", action=TrainSetOption, const="ann", metavar="ANN",
                   help="training annotation JSON; repeat --train-ann A --train-images I pairs for several sets")
    p.add_argument("--train-images", dest="train_set_options", action=TrainSetOption, const="images",
                   metavar="IMAGES", help="images of the --train-ann of the same position")
    p.add_argument("--train-repeat", dest="train_set_options", action=TrainSetOption, const="repeat", type=int,
                   metavar="R", help="the --train-ann before it R times per epoch")
    p.add_argument("--train-sets", help='the training sets as JSON (inline or a file): [{"ann", "images", "repeat"}]')
    p.add_argument("--val-ann", required=True, help="the fixed validation split (GT boxes)")
    p.add_argument("--val-images", required=True)
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per candidate (default 10)")
    p.add_argument("--candidates", default=",".join(CANDIDATES),
                   help=f"comma-separated names (default all): {', '.join(CANDIDATES)}")
    p.add_argument("--out", default=str(REPO.parent / "runs" / "probe"),
                   help="folder for the runs and the table (default ../runs/probe, outside the repository)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads of each run")
    p.add_argument("--val-every-min", type=float, help="also validate every N minutes of training (the curve)")
    p.add_argument("--set", dest="common", action="append", type=parse_override, default=[], metavar="KEY=VALUE",
                   help="a TrainConfig field for every candidate (JSON value), e.g. --set image_size=[64,48]")
    p.set_defaults(train_set_options=[])
    return p.parse_args(argv)


def training_sets(args: argparse.Namespace) -> dict[str, Any]:
    """train_ann / train_images / train_repeat / extra_train_sets from the pairs or --train-sets."""
    if args.train_sets:
        if args.train_set_options:
            raise SDPoseError("give --train-ann/--train-images pairs or --train-sets, not both")
        text = Path(args.train_sets).read_text() if Path(args.train_sets).is_file() else args.train_sets
        try:
            sets = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SDPoseError(f"--train-sets is neither a JSON file nor a JSON list: {exc}") from None
        if not isinstance(sets, list) or not sets:
            raise SDPoseError('--train-sets must be a JSON list of {"ann", "images", "repeat"}')
        items = [(kind, value) for s in sets for kind, value in
                 (("ann", s.get("ann")), ("images", s.get("images")), ("repeat", s.get("repeat", 1)))]
    else:
        items = args.train_set_options
    fields = train_sets_from_options(items)
    if "train_ann" not in fields or "train_images" not in fields:
        raise SDPoseError("the probe needs training data: --train-ann A --train-images I (or --train-sets)")
    return fields


def candidate_settings(name: str, base: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(TrainConfig fields, "") for a runnable candidate, or (None, why it is skipped)."""
    if name not in CANDIDATES:
        return None, f"unknown candidate (known: {', '.join(CANDIDATES)})"
    changes = CANDIDATES[name]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    missing = sorted(set(changes) - known)
    if missing:
        return None, f"TrainConfig has no {', '.join(missing)} in this checkout"
    settings = {**base, **changes}
    try:
        TrainConfig.from_dict({**settings, "out": "probe"})
    except SDPoseError as exc:
        return None, f"its settings are rejected: {exc}"
    return settings, ""


def run_training(config_file: Path, minutes: float, log_file: Path, threads: int) -> int:
    """`python -m sdpose_core train --config FILE --time-budget MIN` (continues from last.pt when the folder has
    one). Ctrl-C and SIGTERM reach the run, which saves last.pt before it exits; the probe waits for that."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with log_file.open("a") as log:
        command = [sys.executable, "-m", "sdpose_core", "train", "--config", str(config_file),
                   "--time-budget", repr(minutes)]
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.send_signal(signal.SIGTERM))
        try:
            while True:
                try:
                    return proc.wait()
                except KeyboardInterrupt:  # the run saves last.pt and exits: wait for it
                    proc.send_signal(signal.SIGINT)  # (a terminal's Ctrl-C reached it already; twice is harmless)
        finally:
            signal.signal(signal.SIGTERM, previous)


def summarise(name: str, run_dir: Path, minutes: float) -> dict[str, Any]:
    """The candidate's row and curve, from its last.pt and metrics.jsonl."""
    from sdpose_core.train.state import load_train_state

    state = load_train_state(run_dir / "last.pt")
    cycles = int(state["model_config"]["cycles"])
    records = read_metrics(run_dir)
    steps = int(state["global_step"])
    iters = [r for r in records if r["kind"] == "iter" and r["step"] <= steps]
    tail = [r["loss"] for r in iters if r["step"] > 0.9 * steps] or [r["loss"] for r in iters[-1:]]
    points = []
    for val in validation_curve(records):
        first, last = val["cycles"].get(1, {}), val["cycles"].get(cycles, {})
        points.append({"step": val["step"], "samples": val["samples"], "train_s": val["train_s"],
                       "OKS_c1": first.get("OKS"), "AP_c1": first.get("AP"),
                       "OKS_cN": last.get("OKS"), "AP_cN": last.get("AP")})
    final = points[-1] if points and points[-1]["step"] == steps else {}
    elapsed = float(state.get("time_budget", {}).get("elapsed_s", 0.0))
    samples = int(state.get("samples_seen", 0))
    return {
        "candidate": name, "changes": " ".join(f"{k}={v}" for k, v in CANDIDATES[name].items()) or "(recipe)",
        "samples": samples, "steps": steps, "train_loss": sum(tail) / len(tail) if tail else None,
        **{key: final.get(key) for key in ("OKS_c1", "OKS_cN", "AP_c1", "AP_cN")},
        "samples_per_s": samples / elapsed if elapsed > 0 else None,
        "train_minutes": elapsed / 60, "minutes_asked": minutes, "epochs": int(state["epoch"]), "cycles": cycles,
        "lr_plan": state.get("lr_plan"), "curve": points, "run_dir": str(run_dir),
    }


def budget_spent(run_dir: Path) -> bool:
    """Whether the run in `run_dir` trained its whole time budget (else a signal stopped it)."""
    from sdpose_core.train.state import load_train_state

    state = load_train_state(run_dir / "last.pt")
    return float(state["time_budget"]["elapsed_s"]) >= 60.0 * float(state["config"]["time_budget_min"])


def probe_candidate(name: str, settings: dict[str, Any], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = out / name
    result_file = folder / "result.json"
    if result_file.is_file():
        result = json.loads(result_file.read_text())
        if abs(result.get("minutes_asked", args.minutes) - args.minutes) > 1e-9:
            print(f"[probe] {name}: kept the result of a {result['minutes_asked']:g}-min run "
                  f"(delete {result_file} to rerun with {args.minutes:g} min)", flush=True)
        else:
            print(f"[probe] {name}: done before ({result_file})", flush=True)
        return result
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = folder / "run"
    config = {**settings, "out": str(run_dir), "time_budget_min": args.minutes}
    config_file = folder / "config.json"
    config_file.write_text(json.dumps(config, indent=2))
    action = "continues" if (run_dir / "last.pt").is_file() else "trains"
    print(f"[probe] {name} {action} for {args.minutes:g} min of training -> {run_dir}", flush=True)
    began = time.perf_counter()
    code = run_training(config_file, args.minutes, folder / "train.log", args.threads)
    tail = (folder / "train.log").read_text().splitlines()[-3:]
    if code != 0:
        return {"candidate": name, "failed": f"exit {code}: {' / '.join(tail)}"}
    if not budget_spent(run_dir):  # stopped by a signal: last.pt holds it, the next call continues
        raise KeyboardInterrupt(f"{name} was interrupted; its last.pt is saved: run the same command to continue")
    result = summarise(name, run_dir, args.minutes)
    result["wall_minutes"] = (time.perf_counter() - began) / 60
    result_file.write_text(json.dumps(result, indent=2))
    return result


def markdown_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    def show(value: Any) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(show(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out: Path, header: dict[str, Any], rows: list[dict[str, Any]], skipped: dict[str, str]) -> str:
    done = [r for r in rows if "failed" not in r]
    table = format_table([{c: r.get(c) for c in COLUMNS} for r in done], COLUMNS) if done else "(no results)"
    notes = [f"skipped {name}: {why}" for name, why in skipped.items()]
    notes += [f"failed {r['candidate']}: {r['failed']}" for r in rows if "failed" in r]
    text = "\n".join([f"# {k}: {v}" for k, v in header.items()] + [table, *notes])
    md = ["# Convergence probe\n", *[f"- {k}: {v}" for k, v in header.items()], "",
          markdown_table(done, COLUMNS), "", *[f"- {n}" for n in notes]]
    for r in done:
        md += ["", f"## {r['candidate']}: OKS / AP against samples seen", "",
               markdown_table(r["curve"], ("samples", "step", "train_s", "OKS_c1", "AP_c1", "OKS_cN", "AP_cN"))]
    (out / "probe.md").write_text("\n".join(md) + "\n")
    (out / "probe.json").write_text(json.dumps({"header": header, "results": rows, "skipped": skipped}, indent=2))
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data = training_sets(args)
        recipe = load_recipe("demo-default", None)
        base = {**{k: recipe[k] for k in RECIPE_KEYS}, **data, "val_ann": args.val_ann,
                "val_images": args.val_images, "epochs": 100_000, "progress": False,  # the budget ends the runs
                "val_every_min": args.val_every_min, **dict(args.common)}
        TrainConfig.from_dict({**base, "out": "probe"})
    except SDPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = {"CPU": cpu_summary(), "threads": args.threads, "minutes per candidate (training time)": args.minutes,
              "train": json.dumps({k: v for k, v in data.items()}), "val": f"{args.val_ann} ({args.val_images})",
              "common settings": json.dumps({k: base[k] for k in (*RECIPE_KEYS, *dict(args.common))})}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in [n.strip() for n in args.candidates.split(",") if n.strip()]:
        settings, why = candidate_settings(name, base)
        if settings is None:
            print(f"[probe] skip {name}: {why}", flush=True)
            skipped[name] = why
            continue
        try:
            rows.append(probe_candidate(name, settings, out, args))
        except KeyboardInterrupt as exc:
            print(f"[probe] {exc or 'interrupted'}", file=sys.stderr)
            return 130
    print(write_report(out, header, rows, skipped))
    print(f"[probe] wrote {out / 'probe.json'} and {out / 'probe.md'}")
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
