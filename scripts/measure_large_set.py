"""How long the Samples / Review tabs take on a large labelled set (default: the 10,000 LSP-extended people).

    python scripts/measure_large_set.py                     # lists ../shared/data, opens lsp_extended,
    python scripts/measure_large_set.py --sample 200 1000   # analyses seeded samples, renders one gallery page

Each step is the function the tab calls (`app.tabs.samples`), with the studio's default weights, in this process
and on this machine (the CPU is printed). "first page" renders the PAGE_SIZE thumbnails the gallery shows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.context import AppContext  # noqa: E402
from app.tabs.sample_data import set_choices  # noqa: E402
from app.tabs.samples import PAGE_SIZE, analyse  # noqa: E402
from sdpose_core.paths import data_root  # noqa: E402
from sdpose_core.precision import cpu_description  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(data_root()), help="the folder the Samples tab opens")
    parser.add_argument("--set", default="lsp_extended/crowdpose.json", help="the set to analyse, under --root")
    parser.add_argument("--sample", type=int, nargs="+", default=[200], help="sample sizes (images) to analyse")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}")
    start = time.perf_counter()
    choices, note = set_choices(args.root)
    print(f"open {args.root}: {time.perf_counter() - start:.2f} s ({note})")
    ann = str(Path(args.root) / args.set)
    ctx = AppContext(num_threads=args.threads)
    ctx.predictor()  # the model loads once, before the timed steps
    for size in args.sample:
        start = time.perf_counter()
        status, *_ = analyse(ctx, ann, 3, "gt", "drop", False, 1, "worst OKS", "all", "any", size, 1)
        first = time.perf_counter() - start
        start = time.perf_counter()
        analyse(ctx, ann, 3, "gt", "drop", False, 1, "worst OKS", "all", "any", size, 2)
        print(f"analyse a sample of {size} images (3 cycles, GT boxes) + first page of {PAGE_SIZE} thumbnails: "
              f"{first:.1f} s; next page from the cache: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
