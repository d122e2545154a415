"""`python -m sdpose_core.detection [--pb PATH] [--out PATH]`: regenerate the detector's OpenCV text graph.
`python -m sdpose_core.detection download [NAME ...] [--folder DIR]`: fetch the ONNX detectors (download.py).

See sdpose_core/detection/textgraph.py for what is read from the frozen graph.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sdpose_core.detection.protowire import read_graph
from sdpose_core.detection.ssdlite import DEFAULT_TEXT_GRAPH, frozen_graph_path
from sdpose_core.detection.textgraph import build_text_graph, inspect_ssd_graph


def download(argv: list[str]) -> int:
    from sdpose_core.detection.download import RELEASES, download_detector
    from sdpose_core.errors import SDPoseError

    parser = argparse.ArgumentParser(prog="python -m sdpose_core.detection download",
                                     description="Download the ONNX person detectors from their official releases.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"which ({', '.join(RELEASES)}; default: all)")
    parser.add_argument("--folder", type=Path, help="where to (default: $SDPOSE_DETECTORS, else ~/.cache/sdpose/detectors)")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names or list(RELEASES):
        try:
            print(f"{name}: {download_detector(name, args.folder)}")
        except SDPoseError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["download"]:
        return download(argv[1:])
    parser = argparse.ArgumentParser(description="Generate the OpenCV text graph for the SSD person detector.")
    parser.add_argument("--pb", type=Path, default=None, help="frozen graph (default: the pip package's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_TEXT_GRAPH, help="where to write the .pbtxt")
    args = parser.parse_args(argv)
    pb_path = args.pb or frozen_graph_path()
    spec = inspect_ssd_graph(read_graph(pb_path), str(pb_path))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(build_text_graph(pb_path))
    print(f"wrote {args.out}: input {spec.input_size}, {spec.num_classes} class(es), "
          f"grids {[layer.grid for layer in spec.layers]}, {spec.num_anchors} anchors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
