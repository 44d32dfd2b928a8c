"""Fault tolerance through the real broker: killed workers, a shared group, a paused broker."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.lab.broker import EmbeddedBroker
from tests.conftest import Pki
from tests.support.faults import (
    paused_broker,
    sigkill_mid_stream_then_restart,
    two_workers_one_killed,
)
from tests.support.harness import Exchange, exchange_settings, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="function")]


@pytest_asyncio.fixture
async def exchange(broker: EmbeddedBroker, pki: Pki, tmp_path: Path) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"ft{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path) as running:
        yield running


async def test_sigkill_mid_stream_then_restart_loses_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    await sigkill_mid_stream_then_restart(exchange, tmp_path, 1)


async def test_two_workers_one_killed_the_other_takes_over(
    exchange: Exchange, tmp_path: Path
) -> None:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    await two_workers_one_killed(exchange, tmp_path, 1001)


async def test_paused_broker_recovers_without_restart(pki: Pki, tmp_path: Path) -> None:
    """SIGSTOP on the broker: publishes succeed or fail clearly, and the gateway catches up."""
    with EmbeddedBroker() as paused:
        settings = exchange_settings(paused.bootstrap_servers, pki.directory, "fp")
        async with running_exchange(settings, pki, tmp_path) as exchange:
            assert paused.pid is not None
            pid = paused.pid
            await paused_broker(
                exchange,
                lambda: os.kill(pid, signal.SIGSTOP),
                lambda: os.kill(pid, signal.SIGCONT),
                2001,
            )
