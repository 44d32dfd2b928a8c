"""The fault tests of tests/system/test_faults.py on Apache Kafka, each party its own principal.

At least once: a worker killed mid-stream, or one of two workers killed, loses nothing, and
every recipient's client yields each event once (it drops the redelivered copies by event id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.lab.processes import WorkerProcess
from gateway.settings import Settings
from tests.apache_kafka.conftest import principal_settings
from tests.apache_kafka.test_exchange import gateway_settings
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka
from tests.support.harness import Exchange, running_exchange
from tests.system.test_faults import _all_delivered, _publish, _restart

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest_asyncio.fixture
async def exchange(apache_kafka: ApacheKafka, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = gateway_settings(apache_kafka, pki, tmp_path)

    def principal(agency: str) -> Settings:
        return principal_settings(apache_kafka, agency, pki_dir=pki.directory)

    async with running_exchange(settings, pki, tmp_path, principal) as running:
        yield running


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    first = await _publish(exchange, 3001, 150)
    stream = asyncio.create_task(_publish(exchange, 3151, 150))
    await exchange.wait_for("some receipts", lambda: len(exchange.receipts["police"]) >= 20)
    exchange.worker.kill()
    rest = await stream
    await _restart(exchange, tmp_path / "restarted.log")
    await _all_delivered(exchange, first + rest)


async def test_two_workers_one_killed_the_other_takes_over(
    exchange: Exchange, tmp_path: Path
) -> None:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    survivor = WorkerProcess(exchange.settings, tmp_path / "second.log")
    survivor.start()
    try:
        await survivor.wait_ready(60)
        first = await _publish(exchange, 4001, 100)
        await _all_delivered(exchange, first)
        stream = asyncio.create_task(_publish(exchange, 4101, 200))
        await exchange.wait_for(
            "receipts of the stream", lambda: len(exchange.receipts["police"]) >= 120
        )
        exchange.worker.kill()
        rest = await stream
        await _all_delivered(exchange, first + rest)
    finally:
        survivor.stop()
