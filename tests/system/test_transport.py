"""The Kafka transport against the real embedded broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from connectors.errors import TransportError
from connectors.transport import KafkaTransport, Message
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import free_port


async def _read(transport: KafkaTransport, topic: str, group: str, count: int) -> list[Message]:
    got: list[Message] = []
    stream = transport.consume([topic], group=group)
    async with asyncio.timeout(30), contextlib.aclosing(stream):
        async for message in stream:
            got.append(message)
            if len(got) == count:
                break
    return got


async def test_round_trip_keeps_bytes_key_and_headers(
    broker: EmbeddedBroker, topic_factory: Any, group_factory: Callable[[str], str]
) -> None:
    """Vietnamese UTF-8 values, keys and binary headers come back exactly as sent."""
    topic = await topic_factory("rt")
    transport = KafkaTransport({"bootstrap_servers": broker.bootstrap_servers})
    value = "Phường Bến Nghé, Thủ Đức".encode()
    await transport.send(topic, value, key=b"k1", headers=[("h", b"\x00\xff")])
    (message,) = await _read(transport, topic, group_factory("rt"), 1)
    assert (message.value, message.key, message.headers) == (value, b"k1", (("h", b"\x00\xff"),))
    await transport.close()


async def test_group_resumes_without_skipping(
    broker: EmbeddedBroker, topic_factory: Any, group_factory: Callable[[str], str]
) -> None:
    """A restarted group skips nothing; only the record in hand at the stop may come again."""
    topic = await topic_factory("resume")
    transport = KafkaTransport({"bootstrap_servers": broker.bootstrap_servers}, commit_interval=0.0)
    for n in range(5):
        await transport.send(topic, str(n).encode())
    group = group_factory("resume")
    first = [m.value for m in await _read(transport, topic, group, 3)]
    rest = [m.value for m in await _read(transport, topic, group, 3)]
    assert first == [b"0", b"1", b"2"]
    # Breaking out of the loop closes the iterator before it learns the last record was
    # handled, so at-least-once delivery hands that one record over again, and only it.
    assert rest == [b"2", b"3", b"4"]
    await transport.close()


async def test_unreachable_broker_fails_fast_with_a_clear_error() -> None:
    """Publishing to a port nobody listens on raises TransportError instead of hanging."""
    transport = KafkaTransport({"bootstrap_servers": f"127.0.0.1:{free_port()}"}, send_timeout=2.0)
    async with asyncio.timeout(10):
        with pytest.raises(TransportError, match=r"^cannot reach Kafka at 127\.0\.0\.1:\d+ "):
            await transport.send("anything", b"x")
    await transport.close()
