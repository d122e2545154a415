"""Start SDPose Studio: parse the command line, build the page, launch it (root app.py calls `main`).

    python app.py --weights runs/t/final --samples ../shared/data --port 7860
    python -m app.main --help
    SDPOSE_WEIGHTS=hf://org/repo python app.py

Heavy parts (torch models, the person detector) load on first use, so the page answers within seconds;
nothing heavy is imported before the arguments are parsed, so `--help` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from sdpose_core.hosting.limits import LIMIT_FLAGS, Limits

if TYPE_CHECKING:
    from sdpose_core.hosting.policy import PublicPolicy

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
    public = parser.add_argument_group(
        "public mode", "for hosting (on by itself on Hugging Face Spaces, which sets $SPACE_ID): no endpoint takes a "
        "server path, visitors' uploads and reviews stay in their own browser session, work is bounded")
    public.add_argument("--public", action="store_true", default=None, help="public mode (default: on when $SPACE_ID "
                        "is set, else off)")
    public.add_argument("--local", dest="public", action="store_false",
                        help="local mode even on Spaces (every path accepted; for a private Space)")
    public.add_argument("--state-dir", default=None,
                        help="public mode: the folder of the per-session uploads, reviews and exports "
                             "(default: sdpose-studio-state in the system temp folder)")
    public.add_argument("--hub-allow", action="append", default=[], metavar="ORG/REPO",
                        help="public mode: an hf:// weights repo visitors may load (repeat; default none)")
    for field_name, (flag, what) in LIMIT_FLAGS.items():
        default = getattr(Limits(), field_name)
        public.add_argument(flag, dest=f"limit_{field_name}", type=type(default), default=default, metavar="N",
                            help=f"public mode: {what} (default {default:g})")
    return parser.parse_args(argv)


def public_policy(args: argparse.Namespace) -> PublicPolicy | None:
    """The public mode's rules from the arguments (None: local mode)."""
    from sdpose_core.hosting.policy import PublicPolicy, running_on_spaces

    public = running_on_spaces() if args.public is None else args.public
    if not public:
        return None
    import tempfile

    from sdpose_core.paths import data_root

    limits = Limits(**{name: getattr(args, f"limit_{name}") for name in LIMIT_FLAGS})
    roots = [args.samples] if args.samples else ([data_root()] if data_root().is_dir() else [])
    state_dir = args.state_dir or os.path.join(tempfile.gettempdir(), "sdpose-studio-state")
    return PublicPolicy.create(state_dir, sample_roots=roots, hub_allow=args.hub_allow, limits=limits)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # checked here because the model itself loads on first use, after the page is up
    from sdpose_core.errors import SDPoseError
    from sdpose_core.precision import resolve_device
    from sdpose_core.weights.spec import parse_weights_spec

    weights = args.weights or os.environ.get("SDPOSE_WEIGHTS", "").strip()
    try:
        parse_weights_spec(weights, origin=None if args.weights else f"SDPOSE_WEIGHTS={weights}")
        resolve_device(args.device)
    except SDPoseError as exc:
        raise SystemExit(str(exc)) from None
    from app.context import AppContext
    from app.ui import CONCURRENCY, build_demo, launch, public_launch_options

    try:
        policy = public_policy(args)
    except SDPoseError as exc:
        raise SystemExit(str(exc)) from None
    context = AppContext(weights=args.weights, samples=args.samples, review_dir=args.review_dir, device=args.device,
                         policy=policy)
    demo = build_demo(context)
    queue = {"max_size": policy.limits.queue_size} if policy is not None else {}
    launch(demo.queue(default_concurrency_limit=args.concurrency or CONCURRENCY, **queue), server_name=args.host,
           server_port=args.port, share=args.share, **public_launch_options(policy))


if __name__ == "__main__":
    main()
