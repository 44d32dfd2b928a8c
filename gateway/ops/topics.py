"""Reading a whole topic from the beginning, for the operator's commands (no consumer group).

Reading stops once the broker returned nothing for ``idle_s`` seconds: the embedded broker's
end offsets are wrong, so they cannot say where a topic ends.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from connectors.errors import TransportError
from connectors.transport import partitions_of
from gateway.errors import BrokerError, XgwError
from gateway.settings import Settings

if TYPE_CHECKING:
    from aiokafka import ConsumerRecord


def check_reachable(bootstrap_servers: str, timeout: float = 3.0) -> None:
    """Raise a one-line error unless one of the bootstrap servers accepts a TCP connection."""
    # A plain TCP connect first: aiokafka would log every refused connection before failing.
    if not bootstrap_servers:
        raise XgwError("set XGW_BOOTSTRAP_SERVERS or --bootstrap-servers (try 'xgw broker')")
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except (OSError, ValueError):
            continue
        return
    raise BrokerError(f"cannot reach the broker at {bootstrap_servers}")


async def read_topic(
    settings: Settings, topic: str, *, idle_s: float = 1.0
) -> AsyncGenerator[ConsumerRecord[bytes, bytes], None]:
    """Every record of ``topic`` from the beginning, partition by partition in each batch."""
    from aiokafka import AIOKafkaConsumer, TopicPartition  # noqa: PLC0415 - heavy import
    from aiokafka.errors import KafkaError  # noqa: PLC0415

    check_reachable(settings.bootstrap_servers)
    consumer = AIOKafkaConsumer(
        **settings.consumer_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
    )
    try:
        await consumer.start()
        if topic not in await consumer.topics():
            raise XgwError(f"topic {topic} does not exist on {settings.bootstrap_servers}")
        try:
            numbers = await partitions_of(consumer, topic)
        except TransportError as exc:
            raise XgwError(f"{exc} on {settings.bootstrap_servers}") from exc
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle_s:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            if not batches:
                continue
            quiet_since = time.monotonic()
            for tp in sorted(batches, key=lambda tp: tp.partition):
                for record in batches[tp]:
                    yield record
    except KafkaError as exc:
        raise BrokerError(f"cannot read {topic} from {settings.bootstrap_servers}: {exc}") from exc
    finally:
        await consumer.stop()
