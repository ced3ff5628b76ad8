"""How the long-running commands (``follow``, ``project``, ``inspect``, ``metrics``) stop:
on SIGTERM or SIGINT (Ctrl-C) they finish what is under way, record their positions and exit 0."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "stop_on_signals"]

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that ask a long-running command to stop."""


@contextmanager
def stop_on_signals(on_stop: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """Within the block, the first SIGTERM or SIGINT sets the event it yields (the
    command stops at its next check, having finished the event under way) and calls
    ``on_stop`` (say, to tell a server to exit, whenever the signal comes), and a second
    one raises ``KeyboardInterrupt`` (stop now: what was delivered is still recorded, as
    the follower and the projections record positions in ``finally`` and transactions).
    The previous handlers are restored on leaving. Outside the main thread, where Python
    allows no signal handler, the event is only ever set by the caller."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(number: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        logger.info(
            "%s received: stopping once the work under way is done", signal.Signals(number).name
        )
        stop.set()
        if on_stop is not None:
            on_stop()

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
