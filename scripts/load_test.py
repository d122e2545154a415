"""Load test of the Compare endpoint: N concurrent gradio_client clients for a fixed time, on loopback only.

    python scripts/load_test.py                       # starts the app on a free 127.0.0.1 port: 8 clients, 60 s
    python scripts/load_test.py --url http://127.0.0.1:7860/ --clients 8 --seconds 60

Each client sends Compare requests (3 cycles, SSDLite detector) back to back; the script prints requests
served, throughput, latency percentiles and failures. The app's queue runs `default_concurrency_limit`
requests at once; the rest wait, which is what the latency shows. Only loopback URLs are accepted.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402
from urllib.parse import urlparse  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def default_image() -> str:
    from app.tabs.compare import example_images

    images = example_images()
    shared = [p for p in images if "mmpose_coco" in p]
    if not (shared or images):
        raise SystemExit("no example image found (install scikit-image or provide --image)")
    return (shared or images)[0]


def start_app(concurrency: int) -> tuple[object, str]:
    from app.context import AppContext
    from app.ui import build_demo, launch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = build_demo(AppContext())
    launch(demo.queue(default_concurrency_limit=concurrency), server_name="127.0.0.1", server_port=port,
           prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}/"


def client_loop(url: str, image: str, deadline: float, latencies: list[float], failures: Counter,
                lock: threading.Lock) -> None:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            client.predict(handle_file(image), "current (Model tab)", 3, "ssdlite", False, False, 0.3, "columns",
                           api_name="/compare")
        except Exception as exc:  # noqa: BLE001 - counted and reported
            with lock:
                failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
            continue
        with lock:
            latencies.append(time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=None, help="a running studio on loopback (default: start one here)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--image", default=None, help="image to send (default: a shared COCO image or an example)")
    parser.add_argument("--concurrency", type=int, default=2, help="queue concurrency of the app started here")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 32 or not 1 <= args.seconds <= 600:
        raise SystemExit("keep it bounded: 1-32 clients, 1-600 seconds")
    demo, url = (None, args.url) if args.url else start_app(args.concurrency)
    if urlparse(url).hostname not in LOOPBACK:
        raise SystemExit(f"{url} is not a loopback address; this script only loads a studio on this machine")
    image = args.image or default_image()
    latencies: list[float] = []
    failures: Counter = Counter()
    lock = threading.Lock()
    print(f"{args.clients} clients x {args.seconds:.0f} s on {url.rstrip('/')}/compare with {Path(image).name}; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    start = time.perf_counter()
    deadline = start + args.seconds
    threads = [threading.Thread(target=client_loop, args=(url, image, deadline, latencies, failures, lock))
               for _ in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    served = len(latencies)
    if served:
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"served {served} requests in {wall:.1f} s ({served / wall:.2f} req/s); latency p50 {p50:.2f} s, "
              f"p95 {p95:.2f} s, max {max(latencies):.2f} s; failures {sum(failures.values())}")
    else:
        print(f"served 0 requests in {wall:.1f} s; failures {sum(failures.values())}")
    for message, count in failures.most_common():
        print(f"  {count} x {message}")
    print(f"(requests still running at the deadline are waited for; load average now {os.getloadavg()[0]:.2f})")
    if demo is not None:
        demo.close()


if __name__ == "__main__":
    main()
