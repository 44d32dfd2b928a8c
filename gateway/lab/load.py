"""The load of ``xgw bench``: the event mix, Kafka loading, counting what comes back, /proc.

The mix is what the mock agencies send: police registrations (about 65 %) and address changes
(about 28 %), health vaccinations (about 7 %, refused with ``no_recipients`` because the policy
routes them nowhere yet), and a few percent of bad records cycling through every forgery kind of
:mod:`gateway.lab.forgery` plus repeats of valid events (``duplicate_id``). Valid events are
sealed by the real :class:`~connectors.client.AgencyClient`, through a transport that captures
the bytes instead of sending them, so the benchmark measures what agencies really produce.
What comes back is read by :class:`Arrivals`, and the gateway's receipts by :class:`ReceiptLedger`.
The raw-transport baseline is :mod:`gateway.lab.forwarder`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from connectors.client import AgencyClient
from connectors.mock.people import address_change, resident, vaccination
from connectors.transport import Headers
from gateway.core.records import CE_HEADERS
from gateway.errors import BrokerError, ConfigError, XgwError
from gateway.lab.forgery import Forger, certificate_authority
from gateway.reasons import ReasonCode
from gateway.settings import Settings
from gateway.trust.store import TrustStore
from gateway.wire.keys import SigningKey
from schemas.base import EventModel
from schemas.police import ResidentRegistered

DUPLICATE = "bad:duplicate_id"
VACCINATION_SHARE = 0.07
ADDRESS_CHANGE_SHARE = 0.30  # of police events, once some residents are registered
Progress = Callable[[int], None]
_Model = TypeVar("_Model", bound=EventModel)


@dataclass(frozen=True, slots=True)
class BenchRecord:
    """One ingress record: the agency whose ingress topic receives it, its key and value."""

    kind: str  # the event type, or "bad:<reason code>"
    agency: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Planned:
    """One record to send: a valid event to publish, bytes to write as they are, or a repeat."""

    kind: str
    agency: str
    model: EventModel | None = None
    raw: bytes = b""
    key: bytes | None = None

    @property
    def repeat(self) -> bool:
        """Whether this is the last valid police record again (``duplicate_id``)."""
        return self.kind == DUPLICATE


def forger_for(settings: Settings, keys: dict[str, SigningKey]) -> Forger:
    """A forger with the exchange CA when the PKI folder has its key (certificate attacks)."""
    try:
        ca = certificate_authority(settings.pki_dir)
    except (XgwError, OSError, ValueError):
        ca = None  # an operator's PKI without the root key: no certificate forgeries
    return Forger(keys, ca, settings.max_record_bytes, settings.max_string_chars)


def plan(
    forger: Forger, *, bad_fraction: float, seed: int, clock: Callable[[], datetime]
) -> Iterator[Planned]:
    """An endless, seeded stream of the mix; forged records are made when their turn comes."""
    rng = random.Random(seed)  # noqa: S311 - fake data, not secrets
    register: list[ResidentRegistered] = []
    bad_kinds = [*forger.reasons(), ReasonCode.DUPLICATE_ID]
    bad_count = 0
    while True:
        now = clock()
        today = now.date()
        if register and rng.random() < bad_fraction:
            reason = bad_kinds[bad_count % len(bad_kinds)]
            bad_count += 1
            if reason is ReasonCode.DUPLICATE_ID:
                yield Planned(DUPLICATE, "police")
            else:
                forged = forger.forge(reason, register[-1], now)
                yield Planned(
                    f"bad:{reason.value}", forged.agency, raw=forged.value, key=forged.key
                )
        elif register and rng.random() < VACCINATION_SHARE:
            model: EventModel = _drawn(partial(vaccination, rng, rng.choice(register), today))
            yield Planned(model.event_type, "health", model=model)
        elif register and rng.random() < ADDRESS_CHANGE_SHARE:
            model = _drawn(partial(address_change, rng, rng.choice(register), today))
            yield Planned(model.event_type, "police", model=model)
        else:
            person = _drawn(partial(resident, rng, today))
            register.append(person)
            del register[:-10_000]  # bounded in sustained runs
            yield Planned(person.event_type, "police", model=person)


def _drawn(make: Callable[[], _Model], attempts: int = 200) -> _Model:
    """A fake event the schemas accept; a draw they refuse is drawn again.

    The generators of :mod:`connectors.mock.people` may lag behind the schemas (a code list).
    """
    for _ in range(attempts - 1):
        with contextlib.suppress(ValidationError):
            return make()
    try:
        return make()
    except ValidationError as exc:
        raise ConfigError(f"the mock agencies' fake data no longer validates: {exc}") from exc


class _Capture:
    """A client transport that keeps the last record written instead of sending it."""

    def __init__(self) -> None:
        self.last: tuple[bytes | None, bytes] = (None, b"")

    async def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Headers = ()
    ) -> None:
        del topic, headers
        self.last = (key, value)

    def consume(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError("the capture transport only sends")

    async def close(self) -> None:
        """Nothing to release."""


async def seal_records(
    items: Iterator[Planned],
    n: int,
    keys: dict[str, SigningKey],
    trust: TrustStore,
    progress: Progress,
) -> list[BenchRecord]:
    """``n`` ingress records: valid events sealed by the real agency client, bad ones as forged."""
    capture = _Capture()
    clients = {
        agency: AgencyClient(agency=agency, signing_key=key, trust=trust, transport=capture)
        for agency, key in keys.items()
    }
    records: list[BenchRecord] = []
    last_police: BenchRecord | None = None
    for planned in items:
        if len(records) >= n:
            break
        if planned.repeat:
            if last_police is None:
                continue
            records.append(BenchRecord(DUPLICATE, "police", last_police.key, last_police.value))
        elif planned.model is not None:
            await clients[planned.agency].publish(planned.model)
            key, value = capture.last
            records.append(BenchRecord(planned.kind, planned.agency, key, value))
            if planned.agency == "police":
                last_police = records[-1]
        else:
            records.append(BenchRecord(planned.kind, planned.agency, planned.key, planned.raw))
        if len(records) % 500 == 0:
            progress(len(records))
    progress(len(records))
    return records


def mix_of(records: Sequence[BenchRecord]) -> dict[str, Any]:
    """Counts by kind and the size distribution, for the report."""
    sizes = sorted(len(r.value) for r in records)
    kinds = Counter(r.kind for r in records)
    return {
        "by_type": dict(sorted((k, v) for k, v in kinds.items() if not k.startswith("bad:"))),
        "bad_by_reason": dict(
            sorted((k.removeprefix("bad:"), v) for k, v in kinds.items() if k.startswith("bad:"))
        ),
        "bad": sum(v for k, v in kinds.items() if k.startswith("bad:")),
        "bytes_total": sum(sizes),
        "bytes_median": sizes[len(sizes) // 2] if sizes else 0,
        "bytes_max": sizes[-1] if sizes else 0,
    }


def producer(settings: Settings, **extra: Any) -> AIOKafkaProducer:
    """A producer configured like the gateway's (acks=all, linger, batch size)."""
    return AIOKafkaProducer(
        **settings.kafka_options(),
        acks="all",
        enable_idempotence=False,  # the embedded broker has no idempotent producer
        linger_ms=max(1, int(settings.producer_linger_seconds * 1000)),
        max_batch_size=settings.producer_max_batch_bytes,
        max_request_size=max(1_048_576, settings.max_record_bytes * 2),
        **extra,
    )


async def load(settings: Settings, records: Sequence[BenchRecord], progress: Progress) -> float:
    """Write ``records`` to the ingress topics of ``settings``, in order; return seconds taken."""
    made = producer(settings)
    topics = settings.topics
    try:
        await made.start()
        started = time.perf_counter()
        futures = []
        for i, record in enumerate(records):
            futures.append(
                await made.send(
                    topics.ingress(record.agency),
                    record.value,
                    key=record.key,
                    headers=list(CE_HEADERS),
                )
            )
            if i % 2000 == 0:
                progress(i)
        await asyncio.gather(*futures)
        progress(len(records))
        return time.perf_counter() - started
    except KafkaError as exc:
        raise BrokerError(f"cannot load the ingress topics: {exc!r}") from exc
    finally:
        await made.stop()


@dataclass
class Arrivals:
    """Every record of some topics, with the wall-clock time its batch arrived here.

    Reads by explicit assignment (no consumer group, so no join delay) from the beginning or,
    with ``from_end``, from the current end of each partition.
    """

    settings: Settings
    topics: Sequence[str]
    from_end: bool = False
    # Called with each batch instead of keeping it (long runs must not hold every record).
    sink: Callable[[float, list[bytes]], None] | None = None
    batches: list[tuple[float, list[bytes]]] = field(default_factory=list)
    count: int = 0
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Assign the partitions and start reading in the background."""
        consumer = AIOKafkaConsumer(
            **self.settings.consumer_options(),
            enable_auto_commit=False,
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1_048_576,
        )
        try:
            await consumer.start()
            parts = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in range(self.settings.topic_partitions)
            ]
            consumer.assign(parts)
            if self.from_end:
                await consumer.seek_to_end(*parts)
            else:
                await consumer.seek_to_beginning(*parts)
        except KafkaError as exc:
            await consumer.stop()
            raise BrokerError(f"cannot read {list(self.topics)}: {exc!r}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            got = await consumer.getmany(timeout_ms=200, max_records=10_000)
            if not got:
                continue
            arrived = time.time()
            values = [r.value or b"" for records in got.values() for r in records]
            if self.sink is None:
                self.batches.append((arrived, values))
            else:
                self.sink(arrived, values)
            self.count += len(values)
            self._changed.set()

    async def wait_for(
        self,
        target: int | Callable[[], bool],
        *,
        stall_s: float,
        progress: Progress | None = None,
        what: str = "records",
    ) -> None:
        """Wait until ``count`` reaches ``target`` (or ``target()`` holds); fail on a stall."""
        if isinstance(target, int):
            wanted = target

            def done() -> bool:
                return self.count >= wanted
        else:
            done = target
        last_count, last_change = self.count, time.monotonic()
        while not done():
            if self._task is not None and self._task.done():
                exc = self._task.exception()
                raise BrokerError(f"lost the reader of {what}: {exc!r}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.25)
            if progress is not None:
                progress(self.count)
            if self.count != last_count:
                last_count, last_change = self.count, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                raise XgwError(f"no new {what} for {stall_s:g}s (have {self.count})")

    def values(self) -> Iterator[tuple[float, bytes]]:
        """Every record value with its arrival time."""
        for arrived, values in self.batches:
            for value in values:
                yield arrived, value

    async def stop(self) -> None:
        """Stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, KafkaError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


@dataclass(frozen=True, slots=True)
class ReceiptInfo:
    """What the benchmark keeps of one receipt."""

    arrived: float
    outcome: str  # "accepted" or the reason code
    event_id: str | None
    recipients: int


@dataclass
class ReceiptLedger:
    """The receipts read so far, one per ingress record (repeats from redelivery dropped)."""

    arrivals: Arrivals
    receipts: dict[str, ReceiptInfo] = field(default_factory=dict)
    _parsed: int = 0  # batches of ``arrivals`` already read

    def update(self) -> int:
        """Read the batches that arrived since the last call; return the distinct receipts."""
        batches = self.arrivals.batches
        while self._parsed < len(batches):
            arrived, values = batches[self._parsed]
            for value in values:
                event = json.loads(value)
                data = event["data"]
                self.receipts.setdefault(
                    event["id"],
                    ReceiptInfo(
                        arrived,
                        "accepted" if data["status"] == "accepted" else str(data.get("reason")),
                        data.get("event_id"),
                        len(data.get("recipients", ())),
                    ),
                )
            batches[self._parsed] = (arrived, [])  # parsed: let the bytes go
            self._parsed += 1
        return len(self.receipts)

    def complete(self, target: int) -> Callable[[], bool]:
        """A test for "``target`` distinct receipts", parsing only once enough have arrived."""
        return lambda: self.arrivals.count >= target and self.update() >= target


# --- /proc: memory and CPU of a process --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcSample:
    """Resident memory now and at its peak (VmHWM), and CPU seconds used so far."""

    rss_bytes: int
    peak_rss_bytes: int
    cpu_s: float


def proc_sample(pid: int | None) -> ProcSample | None:
    """Read ``/proc/<pid>``; ``None`` when the process is gone or /proc is missing."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kib(name: str) -> int:
        return int(fields.get(name, "0 kB").split()[0]) * 1024

    # Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    after = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample(kib("VmRSS"), kib("VmHWM"), (int(after[11]) + int(after[12])) / ticks)
