"""Stopping a service process on SIGINT or SIGTERM, in bounded time.

The first signal asks the service to stop cleanly (finish the batch, commit, close the Kafka
clients). Closing a Kafka client can wait for a broker that is gone, so a stop that has not
finished after ``grace_s`` ends the process at once, and so does a second signal. Ending it
this way loses nothing: offsets are committed only after the outputs were acknowledged and the
audit database commits per batch, so a restart reads again what was not finished.
"""

from __future__ import annotations

import asyncio
import os
import signal

from gateway.logs import get_logger

STOP_GRACE_SECONDS = 10.0

log = get_logger("xgw.stopping")


def stop_on_signals(stop: asyncio.Event, what: str, grace_s: float = STOP_GRACE_SECONDS) -> None:
    """Set ``stop`` on SIGINT or SIGTERM; exit the process if it has not ended ``grace_s`` later."""
    loop = asyncio.get_running_loop()

    def stopping(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            _exit_now(what, signum, f"{name} again")
        stop.set()
        log.info("stopping", service=what, signal=name, grace_s=grace_s)
        loop.call_later(grace_s, _exit_now, what, signum, f"not stopped {grace_s:g}s after {name}")

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping, signum)


def _exit_now(what: str, signum: int, why: str) -> None:
    os.write(2, f"xgw: {what}: {why}; exiting now\n".encode())
    os._exit(128 + signum)
