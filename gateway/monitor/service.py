"""The monitor's process (``xgw monitor``): start the faust app inside our own asyncio loop.

faust's ``Worker`` would take the loop, the signals and the logging over; the app is a mode
service, so it is started and stopped here directly, with the project's stop rules
(:mod:`gateway.runtime.stopping`: the first SIGINT or SIGTERM stops cleanly, a second or a
stop that hangs ends the process). ``App.start()`` returns once the tables are recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from gateway.core.policy import load_policy
from gateway.errors import ConfigError, XgwError
from gateway.logs import configure_logging, get_logger
from gateway.monitor.app import Monitor
from gateway.runtime.stopping import stop_on_signals
from gateway.runtime.topic_admin import ensure_topics
from gateway.settings import Settings
from schemas.registry import REGISTRY

log = get_logger("xgw.monitor")


def web_port(host: str, port: int) -> int:
    """``port``, or a free one for 0; a port in use or a foreign address is one clear line."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise ConfigError(
                f"cannot serve the monitor on {host}:{port}: {reason} "
                "(set XGW_MONITOR_PORT, 0 for any free port, or XGW_METRICS_HOST)"
            ) from exc
        return int(probe.getsockname()[1])


def run_monitor(settings: Settings) -> None:
    """Run the monitor until SIGINT or SIGTERM."""
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_level != "DEBUG":  # faust and mode log every step of a rebalance at INFO
        for name in (
            "faust",
            "mode",
            "aiokafka",
            "gateway.monitor.recovery",
            "gateway.monitor.store",
        ):
            logging.getLogger(name).setLevel(logging.WARNING)
        # "producer buffer full" is faust's flow control at work (it waits for the changelog
        # writes to drain), logged at WARNING on every table write while it does.
        logging.getLogger("faust.transport.producer").setLevel(logging.ERROR)
    policy = load_policy(settings.policy_file, REGISTRY)
    port = web_port(settings.metrics_host, settings.monitor_port)

    async def main() -> None:
        await ensure_topics(settings, policy.agencies)
        monitor = Monitor(settings, policy, port)
        stop = asyncio.Event()
        stop_on_signals(stop, "monitor")
        log.info(
            "monitor starting",
            url=f"http://{settings.metrics_host}:{port}/monitor",
            guarantee="at_least_once",  # whatever XGW_PROCESSING_GUARANTEE (docs/monitor.md)
            app_id=settings.monitor_app_id,
        )
        starting = asyncio.create_task(monitor.app.start())
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({starting, stopping}, return_when="FIRST_COMPLETED")
            if starting in done:
                starting.result()
                monitor.metrics.ready.set(1)
                log.info("monitor ready", tables="recovered")
                await stop.wait()
        except XgwError:
            raise
        except Exception as exc:  # faust raises anything; one line out (gateway.cli)
            raise XgwError(f"monitor failed: {exc!r}") from exc
        finally:
            stopping.cancel()
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            await monitor.close()
            await monitor.app.stop()
            log.info("monitor stopped")

    asyncio.run(main())
