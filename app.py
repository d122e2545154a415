"""SDPose Studio: `python app.py` starts the Gradio app (also the Hugging Face Spaces entry point).

    python app.py --weights runs/t/final --samples ../shared/data --port 7860
    SDPOSE_WEIGHTS=hf://org/repo python app.py

Heavy parts (torch models, the person detector) load on first use, so the page answers within seconds.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

# Set before torch is imported anywhere: OpenMP threads that spin while waiting slow everything down badly
# when the 2 cores are shared (with another user's request, or a training run); see README "Speed".
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No phoning home: the studio must start offline (Spaces sets its own value).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="SDPose Studio (Gradio app): compare the cycles of SDPose pose models on images, webcam "
                    "and video, analyse failures on labelled data, review annotations.")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for every interface; default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (default 7860 or $GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also create a public gradio.live link")
    parser.add_argument("--weights", default=None,
                        help="model weights: our folder (config.json + model.safetensors), an official SDPose .pth, "
                             "a run's last.pt, an .onnx export or hf://org/repo[/subdir]; default $SDPOSE_WEIGHTS, "
                             "else assets/sdpose-t-default, else UNTRAINED random weights (the page says so)")
    parser.add_argument("--samples", default=None,
                        help="labelled data for the Samples and Review tabs: a COCO/CrowdPose folder or annotation "
                             "JSON (default: the shared data folder, when present)")
    parser.add_argument("--review-dir", default=None,
                        help="where the Review tab saves its files (default: next to the dataset when writable, "
                             "else a folder the Review tab names)")
    parser.add_argument("--device", default="cpu", help="torch device for the pose model (cpu, cuda, cuda:1)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="requests run at once per event (default 2: the models are shared, CPUs are few)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    weights = args.weights or os.environ.get("SDPOSE_WEIGHTS", "").strip()
    if weights and not weights.startswith("hf://") and not Path(weights).expanduser().exists():
        # checked here because the model itself loads on first use, after the page is up
        raise SystemExit(f"weights not found: {weights} (a weights folder, an official .pth, a run's last.pt, an .onnx "
                         "file or hf://org/repo)")
    if args.device != "cpu":
        import torch

        if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
            raise SystemExit(f"--device {args.device}: CUDA is not available here; use --device cpu")
    from app.context import AppContext
    from app.ui import CONCURRENCY, build_demo, launch

    context = AppContext(weights=args.weights, samples=args.samples, review_dir=args.review_dir, device=args.device)
    demo = build_demo(context)
    launch(demo.queue(default_concurrency_limit=args.concurrency or CONCURRENCY), server_name=args.host,
           server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
