"""The `sdpose` command line: argparse only, one module per command group; the work is done in the packages."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from sdpose_core.cli.main import main as run

    return run(argv)
