"""Cold start of the studio: launch `python app.py` on a free port and time until the page answers.

    python scripts/measure_cold_start.py --runs 3          # prints seconds per run and the median

"Answers" means GET / returns HTTP 200 with the page (the models load later, on first use). Each run is
a fresh process, so it includes importing gradio, torch and the studio, building the page and starting
the server. Extra app options go after `--`, e.g. `-- --weights runs/t/final`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and b"<html" in response.read(4096).lower()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a running process (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def one_run(app_args: list[str], timeout_s: float) -> tuple[float, float | None]:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *app_args], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while time.perf_counter() - start < timeout_s:
            if process.poll() is not None:
                raise SystemExit(f"app.py exited with code {process.returncode}:\n"
                                 f"{process.stderr.read().decode(errors='replace')[-2000:]}")
            if page_answers(f"http://127.0.0.1:{port}/"):
                return time.perf_counter() - start, cpu_seconds(process.pid)
            time.sleep(0.05)
        raise SystemExit(f"the page did not answer within {timeout_s:.0f} s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    app_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one start")
    args = parser.parse_args(own)
    times, cpus = [], []
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine's other work slows the start down)")
    for run in range(1, args.runs + 1):
        seconds, cpu = one_run(app_args, args.timeout)
        times.append(seconds)
        cpus += [cpu] if cpu is not None else []
        used = f" ({cpu:.1f} s of CPU time in the app process)" if cpu is not None else ""
        print(f"run {run}: page answered after {seconds:.2f} s{used}", flush=True)
    print(f"cold start: median {statistics.median(times):.2f} s, min {min(times):.2f} s, max {max(times):.2f} s "
          f"over {len(times)} runs" + (f"; CPU time median {statistics.median(cpus):.1f} s" if cpus else "")
          + f" (python app.py {' '.join(app_args)}); load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
