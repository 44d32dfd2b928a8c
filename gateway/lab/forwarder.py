"""The raw-transport baseline of ``xgw bench``: forward records with no checks at all.

Run as ``python -m gateway.lab.forwarder`` it is an aiokafka consume -> produce loop that
forwards every ingress record of the exchange named by ``XGW_*`` (its topic prefix) to the
delivery topic of the same agency. :class:`Forwarder` runs it as a child process, so it has a
core of its own like a gateway worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from gateway.errors import BrokerError, ConfigError
from gateway.lab.load import producer
from gateway.lab.processes import ChildProcess
from gateway.settings import Settings, settings_env

_READY = b"ready"  # the child's first line on stdout once it has its partitions


class Forwarder:
    """The raw baseline as a child process; its log (stderr) goes to ``log_path``."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._child = ChildProcess(log_path)

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._child.pid

    async def start(self, limit_s: float = 60.0) -> None:
        """Start the loop and wait until it has its partitions."""
        self._child.start(
            [sys.executable, "-m", "gateway.lab.forwarder"],
            {**os.environ, **settings_env(self.settings)},
            stdout_pipe=True,
        )
        stdout = self._child.stdout
        assert stdout is not None  # noqa: S101 - started with stdout_pipe above
        try:
            line = await asyncio.wait_for(asyncio.to_thread(stdout.readline), limit_s)
        except TimeoutError:
            line = b""  # the reading thread ends when stop() ends the child
        if line.strip() != _READY:
            raise BrokerError(f"raw-transport loop did not start; see {self.log_path}")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        await asyncio.to_thread(self._child.stop, 5.0)


async def forward(settings: Settings, stop: asyncio.Event) -> None:
    """Forward ingress records to the same agency's delivery topic until ``stop`` is set."""
    from gateway.core.policy import load_policy  # noqa: PLC0415
    from schemas.registry import REGISTRY  # noqa: PLC0415

    topics = settings.topics
    agencies = load_policy(settings.policy_file, REGISTRY).agencies
    out = {topics.ingress(a): topics.deliver(a) for a in agencies}
    consumer = AIOKafkaConsumer(
        **settings.kafka_options(),
        group_id=f"{settings.app_id}-raw",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    made = producer(settings)
    await consumer.start()
    await made.start()
    try:
        consumer.assign(
            [TopicPartition(t, p) for t in out for p in range(settings.topic_partitions)]
        )
        await consumer.seek_to_beginning()
        print(_READY.decode(), flush=True)  # the parent waits for this line
        last_commit = time.monotonic()
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max)
            futures = [
                await made.send(out[tp.topic], r.value, key=r.key, headers=list(r.headers))
                for tp, records in got.items()
                for r in records
            ]
            await asyncio.gather(*futures)
            # Like the gateway: offsets are committed only once the outputs are acknowledged.
            if got and time.monotonic() - last_commit >= 1.0:
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await made.stop()
        await consumer.stop()


def main() -> None:
    """The child's entry point: forward until SIGTERM."""
    settings = Settings()
    if not settings.bootstrap_servers:
        raise ConfigError("the raw-transport loop needs XGW_BOOTSTRAP_SERVERS")

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await forward(settings, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
