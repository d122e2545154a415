"""A training run's validation curve as a table, and how fast it climbs.

    python scripts/training_curve.py RUN_DIR [--fit-until-min M] [--target-oks 0.55 ...]

Prints one row per validation of RUN_DIR/metrics.jsonl: training minutes, samples seen, the lr of the
last logged step, mean OKS / AP / AP50 of cycle 1 and of the last cycle. Then two least-squares lines
through the cycle-1 OKS of the validations up to --fit-until-min (default: the ones before the first lr
drop, where the lr is still at its peak): OKS = a + b * log2(samples) (a curve that slows down as it goes,
the pessimistic reading) and OKS = a + b * samples (one that keeps its pace, the optimistic reading), and,
for each --target-oks, how many samples and hours at the run's measured samples/s each line needs. These
are extrapolations of the run's own rate, printed as such: they bracket how far a budget is from a goal,
not what a longer run will score.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sdpose_core.train.metrics_log import read_metrics, validation_curve  # noqa: E402


def curve_rows(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    last = max((max(p["cycles"]) for p in points), default=1)
    rows = []
    for point in points:
        first, final = point["cycles"].get(1, {}), point["cycles"].get(last, {})
        rows.append({"minutes": (point["train_s"] or 0.0) / 60, "samples": point["samples"], "lr": point["lr"],
                     "oks_c1": first.get("OKS"), "ap_c1": first.get("AP"), "ap50_c1": first.get("AP50"),
                     "oks_cN": final.get("OKS"), "ap_cN": final.get("AP"), "last_cycle": last})
    return rows


def fit_line(rows: list[dict[str, Any]], log_samples: bool) -> tuple[float, float]:
    """(a, b) of OKS c1 = a + b * x by least squares, x = log2(samples) or samples."""
    samples = np.asarray([r["samples"] for r in rows], dtype=np.float64)
    x = np.log2(samples) if log_samples else samples
    b, a = np.polyfit(x, np.asarray([r["oks_c1"] for r in rows]), 1)
    return float(a), float(b)


def samples_for(target: float, a: float, b: float, log_samples: bool) -> float | None:
    """Samples at which the line reaches `target` (None when it does not rise)."""
    if b <= 0:
        return None
    x = (target - a) / b
    return 2.0 ** x if log_samples else x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--fit-until-min", type=float, help="fit the validations up to this training minute "
                   "(default: those before the first lr drop)")
    p.add_argument("--target-oks", type=float, action="append", default=[],
                   help="cycle-1 mean OKS to extrapolate to (repeatable)")
    args = p.parse_args()
    records = read_metrics(args.run_dir)
    rows = [r for r in curve_rows(validation_curve(records)) if r["samples"] and r["oks_c1"] is not None]
    if not rows:
        sys.exit(f"error: {args.run_dir / 'metrics.jsonl'} holds no validation yet; validate the run "
                 "(--val-ann, --val-every-min) and rerun")
    last = rows[0]["last_cycle"]
    print(f"| training min | samples | lr | OKS c1 | AP c1 | AP50 c1 | OKS c{last} | AP c{last} |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:.1f} | {r['samples']:,} | {r['lr']:.0e} | {r['oks_c1']:.3f} | {r['ap_c1']:.3f} | "
              f"{r['ap50_c1']:.3f} | {r['oks_cN']:.3f} | {r['ap_cN']:.3f} |")
    peak = max(r["lr"] or 0.0 for r in rows)
    if args.fit_until_min is not None:
        fitted = [r for r in rows if r["minutes"] <= args.fit_until_min + 1e-9]
        window = f"validations up to {args.fit_until_min:g} min"
    else:
        fitted = [r for r in rows if (r["lr"] or 0.0) >= 0.999 * peak]
        window = "validations at the peak lr (before the first drop)"
    if len(fitted) < 3:
        print(f"\nfit: {len(fitted)} {window}; 3 or more are needed")
        return
    epochs = [r for r in records if r.get("kind") == "epoch" and r.get("train_samples_per_s")]
    rate = float(np.mean([r["train_samples_per_s"] for r in epochs])) if epochs else None
    print(f"\nfits over {len(fitted)} {window} (extrapolations of this run's rate, not measurements):")
    for log_samples in (True, False):
        a, b = fit_line(fitted, log_samples)
        line = (f"OKS c1 = {a:.3f} + {b:.4f} x log2(samples) ({b:+.3f} per doubling of the samples)" if log_samples
                else f"OKS c1 = {a:.3f} + {b * 1e4:.4f} x samples / 10k")
        print(f"- {line}")
        for target in args.target_oks:
            samples = samples_for(target, a, b, log_samples)
            if samples is None or not math.isfinite(samples):
                print(f"    OKS {target:.2f}: the line does not reach it")
                continue
            hours = f" = {samples / rate / 3600:,.1f} h at {rate:.1f} samples/s" if rate else ""
            print(f"    OKS {target:.2f}: {samples:,.0f} samples{hours}")

if __name__ == "__main__":
    main()
