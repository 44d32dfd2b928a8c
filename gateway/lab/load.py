"""The load of ``xgw bench``: the event mix, Kafka loading and counting, the raw baseline, /proc.

The mix is what the mock agencies send: police registrations (about 65 %) and address changes
(about 28 %), health vaccinations (about 7 %, refused with ``no_recipients`` because the policy
routes them nowhere yet), and a few percent of bad records cycling through every forgery kind of
:mod:`gateway.lab.forgery` plus repeats of valid events (``duplicate_id``). Valid events are
sealed by the real :class:`~connectors.client.AgencyClient`, through a transport that captures
the bytes instead of sending them, so the benchmark measures what agencies really produce.

Run as ``python -m gateway.lab.load FORWARD_PREFIX`` it is the raw-transport baseline: an
aiokafka consume -> produce loop that forwards every ingress record of the exchange named by
``XGW_*`` (its topic prefix) to the delivery topic of the same agency, with no checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
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
            **self.settings.kafka_options(),
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


# --- the raw-transport baseline ----------------------------------------------------------------


class Forwarder:
    """The raw baseline as a child process, so it has a core of its own like a worker."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._process.pid if self._process else None

    async def start(self, limit_s: float = 60.0) -> None:
        """Start the loop and wait until it has its partitions."""
        from gateway.settings import settings_env  # noqa: PLC0415 - only the parent needs it

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **settings_env(self.settings)}
        with open(self.log_path, "ab") as log:  # noqa: ASYNC230 - opening a log file is instant
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway.lab.load",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=env,
            )
        assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE above
        try:
            line = await asyncio.wait_for(self._process.stdout.readline(), limit_s)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            raise BrokerError(f"raw-transport loop did not start; see {self.log_path}")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


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
        print("ready", flush=True)  # the parent waits for this line
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


def _forward_main() -> None:
    settings = Settings()
    if not settings.bootstrap_servers:
        raise ConfigError("the raw-transport loop needs XGW_BOOTSTRAP_SERVERS")

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await forward(settings, stop)

    asyncio.run(run())


if __name__ == "__main__":
    _forward_main()
