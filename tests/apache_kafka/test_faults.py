"""The fault tests of tests/system/test_faults.py on Apache Kafka, each party its own principal.

At least once: a worker killed mid-stream, or one of two workers killed, loses nothing, and
every recipient's client yields each event once (it drops the redelivered copies by event id);
the broker paused for 6 s, the same worker catches up. Exactly once: test_exactly_once.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.apache_kafka.conftest import apache_exchange
from tests.conftest import Pki
from tests.support.apache_kafka import ApacheKafka
from tests.support.faults import (
    paused_broker,
    sigkill_mid_stream_then_restart,
    two_workers_one_killed,
)
from tests.support.harness import Exchange

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest_asyncio.fixture
async def exchange(apache_kafka: ApacheKafka, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    async with apache_exchange(
        apache_kafka, pki, tmp_path, processing_guarantee="at_least_once"
    ) as running:
        yield running


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    await sigkill_mid_stream_then_restart(exchange, tmp_path, 3001)


async def test_two_workers_one_killed_the_other_takes_over(
    exchange: Exchange, tmp_path: Path
) -> None:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    await two_workers_one_killed(exchange, tmp_path, 4001)


async def test_paused_broker_recovers_without_restart(
    exchange: Exchange, apache_kafka: ApacheKafka
) -> None:
    """SIGSTOP on Apache Kafka for 6 s: a publish fails clearly or succeeds, the worker goes on."""
    await paused_broker(exchange, apache_kafka.pause, apache_kafka.resume, 5001)
