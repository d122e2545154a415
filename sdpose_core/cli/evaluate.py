"""`sdpose evaluate` (a model or a baseline on an annotation file) and `sdpose eval-preds` (a results JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sdpose_core.cli.common import format_table, parse_override
from sdpose_core.errors import ConfigError
from sdpose_core.inference.baseline_factory import BASELINES, build_baseline


def add_evaluate_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a model on a COCO / CrowdPose annotation file",
        description="Run a model over every person box (GT or detections), decode every cycle of one "
        "multi-cycle forward pass, and score each cycle (COCO or CrowdPose AP).",
    )
    p.add_argument("--model", help="variant; omit when --weights is a folder / hub repo with config.json")
    p.add_argument("--weights",
                   help="our weights folder, a run's last.pt, an official .pth, or hf://org/repo[/subdir]")
    p.add_argument("--baseline", choices=tuple(BASELINES),
                   help="score a baseline instead of --weights, on the same person crops: "
                        + "; ".join(f"{name} = {what}" for name, what in BASELINES.items())
                        + " (--flip: PP-TinyPose's flip test)")
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

    p = sub.add_parser("eval-preds", help="score a COCO keypoint results JSON against annotations")
    p.add_argument("--ann", required=True, help="keypoint annotation JSON")
    p.add_argument("--preds", required=True, help="COCO keypoint results JSON (list of predictions)")
    p.add_argument("--dataset", choices=("coco", "crowdpose"), help="default: from the annotation file")
    p.add_argument("--out", help="also write the metrics as JSON here")
    p.set_defaults(func=cmd_eval_preds)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.baseline:
        return cmd_evaluate_baseline(args)
    if not args.weights:
        raise ConfigError(f"evaluate needs --weights (a model to score) or --baseline ({', '.join(BASELINES)})")
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
                                        ("--cycles", args.cycles), ("--override", args.model_overrides)) if given]
    if ignored:
        raise ConfigError(f"--baseline {args.baseline} takes no {', '.join(ignored)} (those are for our models)")
    with build_baseline(args.baseline, flip=args.flip) as pose:
        report = run_baseline_evaluation(
            pose, ann=args.ann, images=args.images, boxes=args.boxes,
            det_score_threshold=args.det_score_threshold, dataset=args.dataset, save_preds=args.save_preds,
            progress=sys.stderr.isatty(),
        )
    rows = [{"model": name, **m} for name, m in report["metrics"].items()]
    flip = "flip test" if args.flip else "no flip"
    return _report_evaluation(args, report, f"baseline {args.baseline} ({flip}; pose found for {report['poses_found']})",
                              rows)


def cmd_eval_preds(args: argparse.Namespace) -> int:
    from sdpose_core.evaluation import eval_preds, format_metrics

    metrics = eval_preds(args.ann, args.preds, args.dataset)
    print(format_metrics(metrics, title=f"{args.preds} vs {args.ann}"))
    if args.out:
        Path(args.out).write_text(json.dumps({"ann": args.ann, "preds": args.preds, "metrics": metrics}, indent=2))
    return 0
