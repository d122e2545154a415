"""Stopping a single-process run cleanly: SIGINT / SIGTERM ask the loop to stop instead of killing it.

The loop finishes the step it is on, writes last.pt and final/ and returns, so a long CPU run can be stopped
(Ctrl-C, `kill`), its weights used, and continued later mid-epoch. Under torchrun the ranks would stop at
different steps, so there (and off the main thread, where handlers cannot be installed) the default handlers
stay.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(request_stop: Callable[[str], None], enabled: bool = True) -> Iterator[None]:
    """Within the block SIGINT / SIGTERM call `request_stop(signal name)`; the previous handlers come back
    after it."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        request_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
