"""`sdpose convert-official`, `sdpose flops` and `sdpose models`: converting weights and listing the variants."""

from __future__ import annotations

import argparse
import json

from sdpose_core.cli.common import format_table


def add_weights_commands(sub: argparse._SubParsersAction) -> None:
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
    from sdpose_core.models.registry import model_table

    rows = model_table()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0
