"""The monitor's producer flush (gateway.monitor.flush) against faust-streaming's own.

The channel here stands in for aiokafka: its hand-over takes longer than faust's 0.1 s wait,
as a send does when aiokafka's accumulator is full. No broker is involved or claimed.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage, PendingMessage

from gateway.monitor import flush

HAND_OVER_S = 0.25  # each record's hand-over: longer than faust's 0.1 s


class SlowChannel:
    """Takes HAND_OVER_S per record, and notes what it was handed."""

    def __init__(self) -> None:
        self.handed: list[bytes] = []

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:  # noqa: ARG002 - faust's signature
        await asyncio.sleep(HAND_OVER_S)
        self.handed.append(fut.message.value)


def _record(channel: SlowChannel, value: bytes) -> FutureMessage:
    stand_in = cast(Any, channel)  # faust types it a Channel; only publish_message is used
    message = PendingMessage(stand_in, b"k", value, None, None, None, None, None, None)
    return FutureMessage(message)


async def _flushed(buffer: ProducerBuffer, app: faust.App, n: int) -> int:
    """Put ``n`` records, flush: how many the channel had been handed when flush returned."""
    buffer.app = app
    channel = SlowChannel()
    await buffer.start()
    try:
        for i in range(n):
            buffer.put(_record(channel, f"count {i}".encode()))
        await buffer.flush()
        handed = len(channel.handed)
        await asyncio.sleep(HAND_OVER_S * (n + 1))  # the rest drains: the buffer stops empty
        return handed
    finally:
        await buffer.stop()


@pytest.fixture
def app() -> faust.App:
    return faust.App("flush-test", broker="kafka://127.0.0.1:1", store="memory://")


async def test_the_flush_waits_for_every_record_handed_over(app: faust.App) -> None:
    """Three slow records: the flush returns only once all three are with the producer."""
    assert await _flushed(flush.CompleteFlushBuffer(), app, 3) == 3


async def test_faust_own_flush_returns_with_records_unsent(app: faust.App) -> None:
    """Why the override exists: faust-streaming's flush gives up after 0.1 s without a send.

    When this fails, faust's own flush became complete and the override can go.
    """
    assert await _flushed(ProducerBuffer(), app, 3) < 3


async def test_install_replaces_the_app_producer_buffer(app: faust.App) -> None:
    buffer = flush.install(app)
    assert app.producer.buffer is buffer
    assert buffer.app is app
