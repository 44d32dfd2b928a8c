"""The agency client's transport: a small protocol, a Kafka implementation and a memory one.

The client only needs "send one record and wait for the broker's acknowledgement" and "iterate
over records of some topics as a consumer group". Unit tests use :class:`MemoryTransport`;
integration tests and agencies use :class:`KafkaTransport` against a real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
)

from connectors.errors import TransportError

Headers = Sequence[tuple[str, bytes]]
log = logging.getLogger("xgw.client")


@dataclass(frozen=True, slots=True)
class Message:
    """A record read from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class Transport(Protocol):
    """What the agency client needs from a broker."""

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Write one record; return once the broker acknowledged it, or raise TransportError."""
        ...

    def consume(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        ready: asyncio.Event | None = None,
        from_end: bool = False,
    ) -> AsyncIterator[Message]:
        """Iterate over the records of ``topics`` as member of consumer group ``group``.

        ``ready`` is set once the group has assigned partitions to this consumer. With
        ``group=None`` and ``from_end=True`` the consumer reads every partition itself, only
        what is written after ``ready`` is set (request/reply), and commits nothing.
        """
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryTransport:
    """An in-process broker for unit tests: one unbounded log per topic, offsets per group."""

    def __init__(self) -> None:
        self.logs: dict[str, list[Message]] = defaultdict(list)
        self._offsets: dict[tuple[str, str], int] = defaultdict(int)
        self._changed = asyncio.Condition()

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Append to the topic's log."""
        async with self._changed:
            log = self.logs[topic]
            log.append(Message(topic, 0, len(log), key, value, tuple(headers)))
            self._changed.notify_all()

    async def consume(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        ready: asyncio.Event | None = None,
        from_end: bool = False,
    ) -> AsyncIterator[Message]:
        """Yield records as they are appended, remembering the group's position."""
        if group is None:
            group = f"~{id(topics)}-{time.monotonic_ns()}"
        if from_end:
            for topic in topics:
                self._offsets[group, topic] = len(self.logs[topic])
        if ready is not None:
            ready.set()
        while True:
            async with self._changed:
                pending = [
                    (topic, self.logs[topic][self._offsets[group, topic] :]) for topic in topics
                ]
                if not any(messages for _, messages in pending):
                    await self._changed.wait()
                    continue
            for topic, messages in pending:
                for message in messages:
                    self._offsets[group, topic] = message.offset + 1
                    yield message

    async def close(self) -> None:
        """Nothing to release."""


class _ReadyListener(ConsumerRebalanceListener):  # type: ignore[misc] # aiokafka is untyped
    def __init__(self, ready: asyncio.Event | None) -> None:
        self._ready = ready

    async def on_partitions_revoked(self, revoked: object) -> None:
        """Nothing to do: offsets of handled records are committed as they go."""

    async def on_partitions_assigned(self, assigned: Collection[object]) -> None:
        """Signal readiness after the first assignment that holds partitions."""
        # The first join can come back empty while topic metadata is still unknown.
        if self._ready is not None and assigned:
            self._ready.set()


def _message(record: Any) -> Message:
    return Message(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value or b"",
        tuple(record.headers or ()),
    )


_STOP_SECONDS = 5.0


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer whose start was interrupted, in bounded time, whatever it raises."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(consumer.stop(), _STOP_SECONDS)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    """The partitions of ``topic``, waiting briefly for metadata of a just-created topic.

    A consumer's metadata covers only the topics it asked about (Apache Kafka sends all of them
    only on request), so right after start it may not know ``topic`` yet.
    """
    for _ in range(50):
        found = consumer.partitions_for_topic(topic)
        if found:
            return set(found)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call
        await asyncio.sleep(0.1)
    raise TransportError(f"topic {topic} does not exist")


class KafkaTransport:
    """aiokafka producer and consumers; at-least-once: offsets are committed after processing."""

    def __init__(
        self,
        kafka_options: dict[str, Any],
        *,
        send_timeout: float = 15.0,
        fetch_max_wait_ms: int = 20,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 500,
        commit_interval: float = 1.0,
    ) -> None:
        self._options = kafka_options
        self._send_timeout = send_timeout
        self._consumer_options = {
            # The gateway's outputs may be written in transactions (exactly-once): see only
            # what committed, never a fenced or aborted batch's records.
            "isolation_level": "read_committed",
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "session_timeout_ms": session_timeout_ms,
            "heartbeat_interval_ms": heartbeat_interval_ms,
        }
        self._commit_interval = commit_interval
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()

    async def _started_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    **self._options,
                    acks="all",
                    # The embedded broker has no idempotent producer (docs/operations.md,
                    # "The embedded broker").
                    enable_idempotence=False,
                    linger_ms=2,
                    request_timeout_ms=int(self._send_timeout * 1000),
                )
                try:
                    await asyncio.wait_for(producer.start(), self._send_timeout)
                except (KafkaError, OSError, TimeoutError) as exc:
                    await producer.stop()
                    raise TransportError(await connection_failure(self._options)) from exc
                self._producer = producer
            return self._producer

    def _where(self) -> str:
        return str(self._options.get("bootstrap_servers"))

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        """Write one record and wait (bounded) for the broker's acknowledgement."""
        producer = await self._started_producer()
        try:
            await asyncio.wait_for(
                await producer.send(topic, value, key=key, headers=list(headers)),
                self._send_timeout,
            )
        except TimeoutError as exc:
            raise TransportError(
                f"broker {self._where()} did not acknowledge within {self._send_timeout:g}s"
            ) from exc
        except KafkaError as exc:
            raise TransportError(f"cannot write to {topic}: {exc!r}") from exc

    async def consume(
        self,
        topics: Sequence[str],
        *,
        group: str | None,
        ready: asyncio.Event | None = None,
        from_end: bool = False,
    ) -> AsyncIterator[Message]:
        """Yield records; commit the offsets of yielded records at most every commit interval."""
        if group is None:
            async for message in self._tail(topics, ready, from_end=from_end):
                yield message
            return
        consumer = AIOKafkaConsumer(
            **self._options,
            **self._consumer_options,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        consumer.subscribe(list(topics), listener=_ReadyListener(ready))
        try:
            await consumer.start()
        except KafkaConnectionError as exc:
            await consumer.stop()
            raise TransportError(await connection_failure(self._options)) from exc
        except KafkaError as exc:
            await consumer.stop()
            raise TransportError(f"cannot subscribe to {list(topics)}: {exc!r}") from exc
        except asyncio.CancelledError:  # stopped while joining: close what start() opened
            await _stop_quietly(consumer)
            raise
        last_commit = time.monotonic()
        handled: dict[TopicPartition, int] = {}
        try:
            async for record in consumer:
                if handled and time.monotonic() - last_commit >= self._commit_interval:
                    try:
                        await consumer.commit(handled)
                    except CommitFailedError as exc:
                        # The group went on without this member (its session expired while the
                        # broker or this process was paused): the consumer joins again, and
                        # the records since the last commit come again (dropped by their ids).
                        log.warning("offsets not committed; records will come again: %s", exc)
                    last_commit, handled = time.monotonic(), {}
                yield _message(record)
                # Control returns here only after the caller handled the record, so only
                # records the application has seen are ever committed.
                handled[TopicPartition(record.topic, record.partition)] = record.offset + 1
        except KafkaError as exc:
            raise TransportError(f"lost the subscription to {list(topics)}: {exc!r}") from exc
        finally:
            if handled:
                with contextlib.suppress(KafkaError):
                    await consumer.commit(handled)
            await consumer.stop()

    async def _tail(
        self, topics: Sequence[str], ready: asyncio.Event | None, *, from_end: bool
    ) -> AsyncIterator[Message]:
        """Read every partition of ``topics`` without a group, from the end or the beginning."""
        consumer = AIOKafkaConsumer(**self._options, **self._consumer_options, group_id=None)
        try:
            await consumer.start()
            partitions = [
                TopicPartition(topic, p)
                for topic in topics
                for p in sorted(await partitions_of(consumer, topic))
            ]
            consumer.assign(partitions)
            if from_end:
                await consumer.seek_to_end(*partitions)
            else:
                await consumer.seek_to_beginning(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # resolve now: nothing written after ready is missed
        except KafkaError as exc:
            await consumer.stop()
            raise TransportError(f"cannot read {list(topics)}: {exc!r}") from exc
        except asyncio.CancelledError:
            await _stop_quietly(consumer)
            raise
        if ready is not None:
            ready.set()
        try:
            async for record in consumer:
                yield _message(record)
        except KafkaError as exc:
            raise TransportError(f"lost {list(topics)}: {exc!r}") from exc
        finally:
            await consumer.stop()

    async def close(self) -> None:
        """Flush and stop the producer."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()


_PROBE_SECONDS = 10.0


async def connection_failure(options: dict[str, Any]) -> str:
    """Why the brokers of ``options`` cannot be used, in one line.

    aiokafka reports a refused password and an unreachable broker alike ("Unable to
    bootstrap"); one direct connection tells them apart.
    """
    from aiokafka.conn import create_conn  # noqa: PLC0415 - only on this error path

    servers = str(options.get("bootstrap_servers", ""))
    user, mechanism = options.get("sasl_plain_username"), options.get("sasl_mechanism")
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    security_protocol=options.get("security_protocol", "PLAINTEXT"),
                    ssl_context=options.get("ssl_context"),
                    sasl_mechanism=mechanism or "PLAIN",
                    sasl_plain_username=user,
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                _PROBE_SECONDS,
            )
        except SaslAuthenticationFailed:
            return (
                f"Kafka at {servers} refused the credentials of {user!r} ({mechanism}): check "
                "XGW_SASL_USERNAME and XGW_SASL_PASSWORD"
            )
        except (KafkaError, OSError, TimeoutError, ValueError):
            continue
        conn.close()
        return f"Kafka at {servers} accepted a connection but refused the client's requests"
    return f"cannot reach Kafka at {servers} (XGW_BOOTSTRAP_SERVERS)"
