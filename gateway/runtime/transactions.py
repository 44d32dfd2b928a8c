"""Exactly-once processing: each partition's work in one Kafka transaction, fenced per partition.

With ``XGW_PROCESSING_GUARANTEE=exactly_once`` a worker gives every partition number it owns
(partition ``p`` of each ingress topic and of the state, see gateway/runtime/state.py) a
transactional producer of its own, with the transactional id ``<app_id>-<p>``. A batch's records
of partition ``p`` are decided, and their deliveries, receipts, dead letters, audit records,
state changelog records and input offsets are written, in one transaction of that producer: a
``read_committed`` consumer sees all of them or none.

**Fencing.** A worker that lost partition ``p`` without knowing it (paused past its session
timeout, or cut off from the coordinator) must not commit ``p``'s work any more. The new owner of
``p`` starts the producer of ``<app_id>-<p>`` before it reads ``p``'s state or offsets; the broker
then aborts the old owner's open transaction and refuses its later ones (``ProducerFenced``), so
the old owner stops, and what it decided is never seen. This is one producer per partition, the
way Kafka Streams fenced before KIP-447, because aiokafka's ``send_offsets_to_transaction`` sends
no group generation: the broker could not tell a stale member's offsets from the current one's
with a single producer per worker.

**Failure.** A transaction that fails is aborted, and the worker stops (:class:`BrokerError`):
its local state already holds the aborted batch's changes, so it cannot go on; a restarted worker
rebuilds the state from the committed changelog and reads on from the committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from gateway.core.records import OutRecord
from gateway.errors import BrokerError
from gateway.logs import get_logger
from gateway.runtime.producer import CachedPartitioner, queue_batches

log = get_logger("xgw.transactions")
T = TypeVar("T")

# An open transaction holds back every read_committed consumer of the topics it wrote to, until
# it ends or this passes (the broker then aborts it). A killed worker's transaction is aborted
# sooner, when the partition's new owner starts its producer; a batch takes well under a second.
TRANSACTION_TIMEOUT_MS = 10_000


def transactional_id(app_id: str, partition: int) -> str:
    """The transactional id of the owner of ``partition``: ``<app_id>-<partition>``."""
    return f"{app_id}-{partition}"


class _TransactionWriter:
    """Writes records into the producer's transaction (no retries: the caller aborts).

    The transaction begins with the first write: work that writes nothing (a timer with
    nothing due, most of the time) costs no transaction, and holds the worker's lock for no
    round trip to the broker.
    """

    def __init__(self, producer: AIOKafkaProducer, partitioner: CachedPartitioner) -> None:
        self._producer = producer
        self._partitioner = partitioner
        self.begun = False

    async def begin(self) -> None:
        """Begin the transaction, unless it has begun."""
        if not self.begun:
            await self._producer.begin_transaction()
            self.begun = True

    async def write(self, records: list[OutRecord]) -> None:
        """Write ``records``; return once the broker acknowledged every one."""
        if not records:
            return
        await self.begin()
        futures = await queue_batches(self._producer, self._partitioner, records)
        # Every future awaited: a fenced producer fails them all, and one raised is enough.
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


class PartitionTransactions:
    """One transactional producer per partition number this worker owns.

    ``options`` are the worker's producer options (:func:`producer_options`); idempotence and
    the transactional id are added here.
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        app_id: str,
        partitioner: CachedPartitioner,
    ) -> None:
        self._options = {
            **options,
            "enable_idempotence": True,
            "acks": "all",
            "transaction_timeout_ms": TRANSACTION_TIMEOUT_MS,
        }
        self._app_id = app_id
        self._partitioner = partitioner
        self._producers: dict[int, AIOKafkaProducer] = {}

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions that have a producer."""
        return frozenset(self._producers)

    async def keep_only(self, partitions: frozenset[int]) -> None:
        """Close the producers of partitions not in ``partitions``; start the missing ones.

        Starting a producer does not fence yet; its first transaction does (see :meth:`run`),
        which :meth:`fence` runs for every newly owned partition before its state is read.
        """
        for partition in sorted(self.partitions - partitions):
            await self._close(partition)
        for partition in sorted(partitions - self.partitions):
            producer = AIOKafkaProducer(
                **self._options,
                transactional_id=transactional_id(self._app_id, partition),
                partitioner=self._partitioner,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise BrokerError(
                    f"cannot start the transactional producer of partition {partition} "
                    f"({exc!r}): XGW_PROCESSING_GUARANTEE=exactly_once needs a broker with "
                    "transactions (Apache Kafka; the embedded broker has none) and the "
                    f"transactional ids {self._app_id}-* in the gateway user's ACLs"
                ) from exc
            self._producers[partition] = producer

    async def close(self) -> None:
        """Close every producer (an open transaction is aborted by the broker, or fenced)."""
        for partition in sorted(self.partitions):
            await self._close(partition)

    async def run(
        self,
        partition: int,
        work: Callable[[_TransactionWriter], Awaitable[T]],
        offsets: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> T:
        """Run ``work`` in one transaction of ``partition``'s producer, with ``offsets``.

        ``work`` writes through the writer it is given; ``offsets`` (the next offset to read,
        per input partition) are committed for ``group_id`` in the same transaction. Without
        records or offsets there is no transaction. Raises :class:`BrokerError` when the
        transaction could not commit (it is aborted): fenced by a newer owner of the partition,
        or refused by the broker.
        """
        producer = self._producers.get(partition)
        if producer is None:
            raise BrokerError(f"partition {partition} has no transactional producer")
        writer = _TransactionWriter(producer, self._partitioner)
        try:
            result = await work(writer)
            if offsets:
                await writer.begin()
                await producer.send_offsets_to_transaction(dict(offsets), group_id)
            if writer.begun:
                await producer.commit_transaction()
        except ProducerFenced as exc:
            raise BrokerError(
                f"partition {partition} is another worker's now (its transactional producer "
                f"{transactional_id(self._app_id, partition)} was fenced); nothing of this "
                "batch is visible"
            ) from exc
        except KafkaError as exc:
            if writer.begun:
                await self._abort(partition, producer)
            raise BrokerError(
                f"the transaction of partition {partition} failed and was aborted: {exc!r}"
            ) from exc
        return result

    async def run_each(
        self,
        partitions: Collection[int],
        work: Callable[[int, _TransactionWriter], Awaitable[T]],
    ) -> list[T]:
        """Run ``work(partition, writer)`` for each of ``partitions`` in its own transaction.

        In partition order, one after the other; a partition it writes nothing to costs no
        transaction. Returns the results in that order.
        """
        results = []
        for partition in sorted(partitions):

            async def one(writer: _TransactionWriter, p: int = partition) -> T:
                return await work(p, writer)

            results.append(await self.run(partition, one))
        return results

    async def fence(self, topic: str, partitions: frozenset[int], key: bytes) -> dict[int, int]:
        """Write a fence record to each partition of ``topic`` in its own transaction.

        The first transaction of a new producer fences the previous owner: its open
        transaction is aborted and completed before this one commits, so whatever the old owner
        committed is readable (read_committed) before the fence. Returns each fence's offset.
        """

        async def send(partition: int, writer: _TransactionWriter) -> int:
            await writer.begin()
            producer = self._producers[partition]
            sent = await producer.send_and_wait(topic, b"", key=key, partition=partition)
            return int(sent.offset)

        offsets = await self.run_each(partitions, send)
        return dict(zip(sorted(partitions), offsets, strict=True))

    async def _close(self, partition: int) -> None:
        producer = self._producers.pop(partition)
        with contextlib.suppress(KafkaError):
            await producer.stop()

    async def _abort(self, partition: int, producer: AIOKafkaProducer) -> None:
        try:
            await producer.abort_transaction()
        except KafkaError as exc:  # the broker aborts it when the transaction times out
            log.warning("transaction not aborted", partition=partition, error=repr(exc))
