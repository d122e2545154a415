"""Frames per second of the Webcam tab's per-frame function, before and after each speed-up, in one run.

    python scripts/measure_webcam_fps.py                         # pose2sim single-person clip, 60 frames
    python scripts/measure_webcam_fps.py --clip sports2d_demo.mp4 --max-people 4 --weights runs/t/final

Every frame of a recorded clip (../shared/data/unlabeled/videos) goes through `sdpose_core.inference.live.LiveSession.process`
-- the function the webcam stream calls: detector (or boxes tracked from the last keypoints), pose, drawing
-- under several settings, from the naive pipeline to the one the tab uses. Settings take turns frame by
frame, so a load change on this shared machine hits all of them alike. Frames are decoded beforehand (a
webcam delivers decoded frames); the browser round trip is not included. fps = frames / summed wall time.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see app.py

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.context import AppContext  # noqa: E402
from sdpose_core.inference.live import FrameStats, LiveSession, LiveSettings, native_bf16  # noqa: E402
from sdpose_core.media.video import iter_video_frames, video_info  # noqa: E402
from sdpose_core.paths import data_root  # noqa: E402

STAGES = ("resize_ms", "detect_ms", "pose_ms", "draw_ms", "total_ms")


def configurations(max_people: int, cycles: int) -> list[tuple[str, LiveSettings]]:
    """From the naive pipeline to the webcam tab's, one change at a time."""
    naive = LiveSettings(mode="single", max_side=4096, detector="ssdlite", detect_every=1, fast_model=False,
                         bf16=False, max_people=max_people, cycles=cycles)
    steps = [("naive: full frame, detector (6 passes) every frame, plain fp32 model", naive)]
    steps.append(("+ frames shrunk to 480 px", dataclasses.replace(steps[-1][1], max_side=480)))
    steps.append(("+ the studio's detector ('best': RTMDet-nano when present, one pass)",
                  dataclasses.replace(steps[-1][1], detector="best")))
    steps.append(("+ detector every 5th frame, boxes tracked from keypoints",
                  dataclasses.replace(steps[-1][1], detect_every=5)))
    steps.append(("+ BN folded, channels-last", dataclasses.replace(steps[-1][1], fast_model=True)))
    if native_bf16():
        steps.append(("+ bf16 autocast (the webcam tab's setting)", dataclasses.replace(steps[-1][1], bf16=True)))
    steps.append((f"webcam tab, N-cycle mode ({cycles} cycles)", dataclasses.replace(steps[-1][1], mode="cycles")))
    return steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="pose2sim_singleperson_cam01.mp4",
                        help="a file in ../shared/data/unlabeled/videos, or any video path")
    parser.add_argument("--frames", type=int, default=60, help="frames measured per setting (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-people", type=int, default=1,
                        help="people posed per frame (the best detections); 1 = the one-person goal")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--weights", default=None, help="as app.py --weights (default: the app's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all CPUs available)")
    args = parser.parse_args(argv)

    clip = Path(args.clip)
    if not clip.is_file():
        clip = data_root() / "unlabeled" / "videos" / args.clip
    info = video_info(clip)
    frames = [f for f in iter_video_frames(clip, max_frames=args.frames + args.warmup)]
    ctx = AppContext(weights=args.weights, num_threads=args.threads)
    import torch

    weights = ctx.weights_info
    # the app chooses its backend (backend="auto") in a background thread: wait, so that measuring the
    # candidates does not slow down the frames timed here
    ctx.predictor().planner.wait()
    print(f"backend: {ctx.predictor().backend_status()}")
    print(f"clip: {clip.name} ({info.width}x{info.height}, {len(frames)} frames used); weights: "
          f"{weights.description[:90]}; model input {'x'.join(map(str, ctx.predictor().config.image_size))}; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()[0]:.2f}")
    setups = configurations(args.max_people, args.cycles)
    sessions = [LiveSession(settings) for _, settings in setups]
    records: list[list[FrameStats]] = [[] for _ in setups]
    walls = [0.0 for _ in setups]
    cpus = [0.0 for _ in setups]
    for index, frame in enumerate(frames):
        for number, session in enumerate(sessions):
            start, cpu_start = time.perf_counter(), time.process_time()
            _, stats = session.process(frame.image, ctx, time_s=frame.time_s)
            if index >= args.warmup:
                walls[number] += time.perf_counter() - start
                cpus[number] += time.process_time() - cpu_start
                records[number].append(stats)
    print(f"\n{'setting':<72} {'fps':>6} " + " ".join(f"{s[:-3]:>7}" for s in STAGES)
          + "  cpu ms  people  detections")
    for (name, _), stats, wall, cpu in zip(setups, records, walls, cpus, strict=True):
        means = [np.mean([getattr(s, stage) for s in stats]) for stage in STAGES]
        people = np.mean([s.people for s in stats])
        detected = sum(s.detected for s in stats)
        print(f"{name:<72} {len(stats) / wall:6.1f} " + " ".join(f"{m:7.1f}" for m in means)
              + f"  {cpu / len(stats) * 1e3:6.1f}  {people:6.2f}  {detected:4d}/{len(stats)}")
    print("\nWall-clock ms per frame, means; detect = detector or tracked boxes; pose = crops + model + decoding; "
          "cpu ms = CPU time of this process per frame, all threads (what the frame costs whatever else runs). "
          f"Goal: >= 15 fps single pass, one person. Load average now {os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
