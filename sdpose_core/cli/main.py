"""The `sdpose` command line: train, evaluate, eval-preds, convert-official, flops, models.

Every `SDPoseError` (bad file, bad config, wrong checkpoint) is printed as "error: <message>" and exits
with status 2, like argparse's own usage errors; anything else is a bug and keeps its traceback.
Heavy imports (torch, models, data) happen inside the subcommands so `sdpose --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdpose_core.cli.data import add_data_commands
from sdpose_core.cli.predict import add_inference_commands
from sdpose_core.errors import ConfigError, SDPoseError

if TYPE_CHECKING:  # the engine imports torch; keep `sdpose --help` light
    from sdpose_core.train.config import TrainConfig

EXIT_USAGE = 2


def parse_override(text: str) -> tuple[str, Any]:
    """KEY=VALUE for a ModelConfig field; VALUE is JSON (24, [2, 2], "x") or comma-separated ints (2,2)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. dim=24 or patch_size=2,2), got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        parts = raw.split(",")
        try:
            value = [int(p) for p in parts] if len(parts) > 1 else raw
        except ValueError:
            value = raw
    return key.strip().replace("-", "_"), value


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Plain aligned text table; floats with 4 significant decimals, -1.0 (undefined AP) as n/a."""
    if not rows:
        return "(empty)"
    columns = list(columns or rows[0].keys())

    def show(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if value == -1.0 else f"{value:.4f}"
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
            return f"{value:,}"
        if isinstance(value, (list, tuple)):
            return "x".join(str(v) for v in value)
        return "" if value is None else str(value)

    cells = [[show(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- parser
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model (single process, or every rank under torchrun)",
        description="Train an SDPose model with the official recipe (Adam 1e-3, 500-iter linear warm-up, "
        "x0.1 at 2/3 and 13/15 of the epochs). Multi-GPU / multi-node: "
        "torchrun --nproc_per_node=N -m sdpose_core train ... . With --resume RUN_DIR the run's saved "
        "settings are used; options given again override them.",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", help="a named recipe shipped in sdpose_core/recipes (e.g. demo-default)")
    p.add_argument("--config", help="a JSON file of training settings (TrainConfig fields)")
    p.add_argument("--model", help="variant (sdpose models lists them); default sdpose-t")
    p.add_argument("--train-ann", help="COCO/CrowdPose keypoint annotation JSON for training")
    p.add_argument("--train-images", help="folder with the training images")
    p.add_argument("--val-ann", help="annotation JSON for per-epoch validation (GT boxes)")
    p.add_argument("--val-images", help="folder with the validation images")
    p.add_argument("--epochs", type=int, help="number of epochs (default 300)")
    p.add_argument("--out", help="run directory (last.pt, best/, final/, logs)")
    p.add_argument("--batch-size", type=int, help="samples per process (default 64)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 1e-3)")
    p.add_argument("--warmup-iters", type=int, help="linear warm-up iterations (default 500)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 2)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--resume", help="run directory or its last.pt to continue from")
    p.add_argument("--cycles", type=int, help="training cycles of the Multi-Cycled Transformer")
    p.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="input size; heatmaps are 1/4")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction,
                   help="mixed precision: fp16 + GradScaler on CUDA; bf16 autocast on CPUs with native bf16 "
                        "(avx512_bf16 / amx_bf16) only, fp32 elsewhere (the log says which and why); default on")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (smoke tests)")
    p.add_argument("--detach-teacher", action="store_true", help="stop gradients through the later cycle")
    p.add_argument("--keypoint-token-weight", type=float,
                   help="weight of the keypoint-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--visual-token-weight", type=float,
                   help="weight of the visual-token distillation term (default 5e-6; 0 = no distillation)")
    p.add_argument("--heatmap-distill-weight", type=float, help="weight of heatmap MSE to the next cycle")
    p.add_argument("--init-weights", help="start from these weights (our folder, official .pth, hf://...)")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no training augmentation")
    p.add_argument("--freeze-bn", action="store_true", help="keep BatchNorm in eval mode (small batches)")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm under DDP on CUDA")
    p.add_argument("--val-flip", action="store_true", help="flip test during validation")
    p.add_argument("--val-every", type=int, help="validate every N epochs (default 1)")
    p.add_argument("--save-every", type=int, help="write last.pt every N epochs (default 1)")
    p.add_argument("--log-every", type=int, help="log every N iterations (default 10)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.add_argument("--override", dest="model_overrides", action="append", type=parse_override,
                   metavar="KEY=VALUE", help="ModelConfig field, e.g. --override dim=96 --override depth=4")
    p.set_defaults(func=cmd_train)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a model on a COCO / CrowdPose annotation file",
        description="Run a model over every person box (GT or detections), decode every cycle of one "
        "multi-cycle forward pass, and score each cycle (COCO or CrowdPose AP).",
    )
    p.add_argument("--model", help="variant; omit when --weights is a folder / hub repo with config.json")
    p.add_argument("--weights",
                   help="our weights folder, a run's last.pt, an official .pth, or hf://org/repo[/subdir]")
    p.add_argument("--baseline", choices=("mediapipe",),
                   help="score a baseline instead of --weights: mediapipe = BlazePose on the same person crops")
    p.add_argument("--ann", required=True, help="keypoint annotation JSON")
    p.add_argument("--images", required=True, help="image folder")
    p.add_argument("--boxes", default="gt", help="'gt' or a COCO-results detections JSON (default gt)")
    p.add_argument("--det-score-threshold", type=float, default=0.0, help="drop detections below this score")
    p.add_argument("--cycles", type=int, help="cycles to run and score (default: the model's training cycles)")
    p.add_argument("--flip", action="store_true", help="flip test (average with the mirrored pass)")
    p.add_argument("--decode", choices=("dark", "argmax"), default="dark", help="heatmap decoding (default dark)")
    p.add_argument("--dataset", choices=("coco", "crowdpose"), help="default: from the annotation file")
    p.add_argument("--out", help="write metrics JSON here (with the command line and timings)")
    p.add_argument("--save-preds", metavar="PREFIX", help="also write PREFIX_cycle{c}.json COCO results")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast: on CPUs with native bf16 (avx512_bf16 / amx_bf16) by default and with "
                        "--amp, fp32 elsewhere (the output says which and why); --no-amp: always fp32")
    p.add_argument("--override", dest="model_overrides", action="append", type=parse_override, default=[],
                   metavar="KEY=VALUE", help="ModelConfig field when building --model (e.g. num_keypoints=17)")
    p.set_defaults(func=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdpose", description="SDPose Studio: train and evaluate SDPose multi-cycled pose transformers."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    p = sub.add_parser("eval-preds", help="score a COCO keypoint results JSON against annotations")
    p.add_argument("--ann", required=True, help="keypoint annotation JSON")
    p.add_argument("--preds", required=True, help="COCO keypoint results JSON (list of predictions)")
    p.add_argument("--dataset", choices=("coco", "crowdpose"), help="default: from the annotation file")
    p.add_argument("--out", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_eval_preds)
    p = sub.add_parser("convert-official", help="convert an official SDPose .pth to our safetensors folder")
    p.add_argument("input", metavar="IN.pth")
    p.add_argument("output", metavar="OUT_DIR")
    p.add_argument("--variant", help="variant name if it cannot be inferred from the weights")
    p.set_defaults(func=cmd_convert_official)
    p = sub.add_parser("flops", help="parameters and GFLOPs of every variant next to the paper's numbers")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_flops)
    p = sub.add_parser("models", help="list the model variants")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_models)
    add_inference_commands(sub)
    add_data_commands(sub)
    return parser


# ------------------------------------------------------------------------- commands
def cmd_train(args: argparse.Namespace) -> int:
    from sdpose_core.train.config import TrainConfig
    from sdpose_core.train.trainer import train

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "argv")}
    if "model_overrides" in given:
        given["model_overrides"] = dict(given["model_overrides"])
    recipe = load_recipe(given.pop("recipe", None), given.pop("config", None))
    if "resume" in given:
        config = resume_config(given)
    elif recipe and (Path(given.get("out", recipe.get("out", ""))) / "last.pt").is_file():
        # a recipe run that was interrupted carries on by running the same command again
        given["resume"] = str(Path(given.get("out", recipe["out"])))
        config = resume_config(given)
    else:
        given = {**recipe, **given}
        missing = [f"--{k.replace('_', '-')}" for k in ("train_ann", "train_images", "out") if k not in given]
        if missing:
            raise ConfigError(f"train needs {', '.join(missing)} (or --resume RUN_DIR, or --recipe NAME)")
        config = TrainConfig.from_dict(given)
    result = train(config)
    if result.interrupted:
        print(f"interrupted after {result.global_step} step(s); state saved in {result.run_dir / 'last.pt'}: "
              f"run the same command again (or sdpose train --resume {result.run_dir}) to continue")
        return 0
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        print(f"trained {result.epochs_completed} epoch(s), {result.global_step} step(s); "
              f"final weights: {result.final_dir}"
              + (f"; best cycle-1 AP {result.best_ap:.4f} at epoch {result.best_epoch}" if result.best_ap is not None
                 else ""))
    return 0


def load_recipe(recipe: str | None, config_file: str | None) -> dict[str, Any]:
    """Training settings from a shipped recipe or a JSON file; "{data}" in paths is the shared data root."""
    from sdpose_core.paths import data_root

    if recipe and config_file:
        raise ConfigError("give --recipe or --config, not both")
    if not recipe and not config_file:
        return {}
    if recipe:
        path = Path(__file__).parent / "recipes" / f"{recipe}.json"
        if not path.is_file():
            known = sorted(p.stem for p in path.parent.glob("*.json"))
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
    from sdpose_core.train.config import TrainConfig
    from sdpose_core.train.state import load_train_state

    resume_path = Path(given["resume"])
    state = load_train_state(resume_path)
    saved = dict(state["config"])
    saved["out"] = str(resume_path if resume_path.is_dir() else resume_path.parent)
    # a smoke-test limit of the interrupted run is not inherited: resuming means "carry on"
    saved["max_steps"] = None
    saved.update(given)
    return TrainConfig.from_dict(saved)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.baseline:
        return cmd_evaluate_baseline(args)
    if not args.weights:
        raise ConfigError("evaluate needs --weights (a model to score) or --baseline mediapipe")
    from sdpose_core.evaluation.evaluate import run_evaluation

    report = run_evaluation(
        weights=args.weights, ann=args.ann, images=args.images, model_name=args.model, boxes=args.boxes,
        det_score_threshold=args.det_score_threshold, cycles=args.cycles, flip=args.flip, decode=args.decode,
        dataset=args.dataset, batch_size=args.batch_size, workers=args.workers, device=args.device,
        model_overrides=dict(args.model_overrides), save_preds=args.save_preds, amp=args.amp,
    )
    print(f"precision: {report['precision']}")
    rows = [{"cycle": int(c.removeprefix("cycle")), **m} for c, m in report["metrics"].items()]
    return _report_evaluation(args, report, f"{report['model']['name']} ({'flip test' if args.flip else 'no flip'})",
                              rows)


def _report_evaluation(args: argparse.Namespace, report: dict[str, Any], what: str, rows: list[dict]) -> int:
    """Print an evaluation report (metrics table and timings) and write it to --out when given."""
    report["command"] = ["sdpose", *args.argv]
    print(f"{report['dataset']} keypoints, {report['num_instances']} {report['boxes_kind']} boxes, {what}:")
    print(format_table(rows))
    t = report["timings"]
    print(f"time: {t['total_s']:.1f} s total, {t['inference_s']:.1f} s inference "
          f"({t['instances_per_s']:.1f} instances/s), {t['eval_s']:.1f} s scoring")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
        print(f"metrics written to {out}")
    return 0


def cmd_evaluate_baseline(args: argparse.Namespace) -> int:
    from sdpose_core.evaluation.evaluate import run_baseline_evaluation

    ignored = [flag for flag, given in (("--weights", args.weights), ("--model", args.model),
                                        ("--cycles", args.cycles), ("--flip", args.flip),
                                        ("--override", args.model_overrides)) if given]
    if ignored:
        raise ConfigError(f"--baseline {args.baseline} takes no {', '.join(ignored)} (those are for our models)")
    report = run_baseline_evaluation(
        args.baseline, ann=args.ann, images=args.images, boxes=args.boxes,
        det_score_threshold=args.det_score_threshold, dataset=args.dataset, save_preds=args.save_preds,
        progress=sys.stderr.isatty(),
    )
    rows = [{"model": name, **m} for name, m in report["metrics"].items()]
    return _report_evaluation(args, report, f"baseline {args.baseline} (pose found for {report['poses_found']})", rows)


def cmd_eval_preds(args: argparse.Namespace) -> int:
    from sdpose_core.evaluation import eval_preds, format_metrics

    metrics = eval_preds(args.ann, args.preds, args.dataset)
    print(format_metrics(metrics, title=f"{args.preds} vs {args.ann}"))
    if args.out:
        Path(args.out).write_text(json.dumps({"ann": args.ann, "preds": args.preds, "metrics": metrics}, indent=2))
    return 0


def cmd_convert_official(args: argparse.Namespace) -> int:
    from sdpose_core.weights.checkpoint import convert_official

    out = convert_official(args.input, args.output, variant=args.variant)
    print(f"converted {args.input} -> {out}")
    return 0


def cmd_flops(args: argparse.Namespace) -> int:
    from sdpose_core.models.flops import flops_table

    table = flops_table()
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from sdpose_core.models import build_model, list_models

    rows = []
    for name in list_models():
        model = build_model(name)
        c = model.config
        rows.append({
            "model": name, "stem": c.stem, "input": list(c.image_size), "patch": list(c.patch_size),
            "dim": c.dim, "depth": c.depth, "heads": c.heads, "cycles": c.cycles,
            "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        })
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # recorded in metrics files
    try:
        return int(args.func(args) or 0)
    except SDPoseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
