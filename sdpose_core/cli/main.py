"""The `sdpose` parser and dispatch; each command group has its module (train, evaluate, weights, predict, data).

Every `SDPoseError` (bad file, bad config, wrong checkpoint) is printed as "error: <message>" and exits
with status 2, like argparse's own usage errors; anything else is a bug and keeps its traceback.
Heavy imports (torch, models, data) happen inside the subcommands so `sdpose --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sdpose_core.cli.data import add_data_commands
from sdpose_core.cli.evaluate import add_evaluate_commands
from sdpose_core.cli.predict import add_inference_commands
from sdpose_core.cli.train import add_train_commands
from sdpose_core.cli.weights import add_weights_commands
from sdpose_core.errors import SDPoseError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdpose", description="SDPose Studio: train and evaluate SDPose multi-cycled pose transformers."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_train_commands(sub)
    add_evaluate_commands(sub)
    add_weights_commands(sub)
    add_inference_commands(sub)
    add_data_commands(sub)
    return parser


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
