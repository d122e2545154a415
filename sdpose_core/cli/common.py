"""What the command modules share: the KEY=VALUE option type and the plain text table they print."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any


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
    """Plain aligned text table; floats with 4 decimals, -1.0 (undefined AP) as n/a."""
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
