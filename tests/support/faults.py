"""The fault scenarios both brokers run (tests/system/test_faults.py, tests/apache_kafka)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from connectors.client import PublishedEvent
from connectors.errors import TransportError
from gateway.lab.processes import WorkerProcess
from gateway.ops.topics import read_topic
from schemas.police import ResidentRegistered
from tests.conftest import make_resident
from tests.support.harness import Exchange

ENTITLED = ("health", "education", "land")  # recipients of resident_registered


def residents(start: int, count: int) -> list[ResidentRegistered]:
    """Distinct people, so the records spread over every ingress partition."""
    return [make_resident(personal_id=f"079190{n:06d}") for n in range(start, start + count)]


async def publish(exchange: Exchange, start: int, count: int) -> list[PublishedEvent]:
    """Police publish ``count`` registrations, one at a time."""
    police = exchange.clients["police"]
    return [await police.publish(model) for model in residents(start, count)]


async def all_delivered(exchange: Exchange, published: list[PublishedEvent]) -> None:
    """Every event accepted, delivered to every entitled agency, and yielded exactly once."""
    ids = {event.id for event in published}

    def complete() -> bool:
        accepted = {r.event_id for r in exchange.receipts["police"] if r.accepted}
        return ids <= accepted and all(
            ids <= {e.id for e in exchange.deliveries[agency]} for agency in ENTITLED
        )

    await exchange.wait_for(f"all {len(ids)} events accepted and delivered", complete)
    for agency in ENTITLED:
        yielded = [e.id for e in exchange.deliveries[agency] if e.id in ids]
        assert len(yielded) == len(ids), f"{agency} was yielded a duplicate"
    rejected = [r for r in exchange.receipts["police"] if r.event_id in ids and not r.accepted]
    assert rejected == []


async def restart(exchange: Exchange, log: Path) -> WorkerProcess:
    """A new worker in place of the exchange's, ready."""
    replacement = WorkerProcess(exchange.settings, log)
    replacement.start()
    exchange.worker = replacement
    await replacement.wait_ready(60)
    return replacement


async def sigkill_mid_stream_then_restart(
    exchange: Exchange, log_dir: Path, start: int
) -> list[PublishedEvent]:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    first = await publish(exchange, start, 150)
    stream = asyncio.create_task(publish(exchange, start + 150, 150))
    await exchange.wait_for("some receipts", lambda: len(exchange.receipts["police"]) >= 20)
    exchange.worker.kill()
    rest = await stream
    await restart(exchange, log_dir / "restarted.log")
    await all_delivered(exchange, first + rest)
    return first + rest


async def two_workers_one_killed(
    exchange: Exchange, log_dir: Path, start: int
) -> list[PublishedEvent]:
    """With two workers in one group, killing one moves its partitions and loses nothing."""
    survivor = WorkerProcess(exchange.settings, log_dir / "second.log")
    survivor.start()
    try:
        await survivor.wait_ready(60)
        await exchange.wait_for(
            "both workers holding partitions",
            lambda: exchange.worker.pid is not None and survivor.pid is not None,
        )
        first = await publish(exchange, start, 100)
        await all_delivered(exchange, first)  # both are working before the kill
        stream = asyncio.create_task(publish(exchange, start + 100, 200))
        await exchange.wait_for(
            "receipts of the stream", lambda: len(exchange.receipts["police"]) >= 120
        )
        exchange.worker.kill()
        rest = await stream
        await all_delivered(exchange, first + rest)
    finally:
        survivor.stop()
    return first + rest


async def committed_copies(exchange: Exchange, published: list[PublishedEvent]) -> Counter[str]:
    """How often each kind of output of ``published`` is on the broker, as read_committed sees it.

    Every record of the receipts, deliveries and audit topics is counted by the event id it is
    about, with no deduplication: keys ``receipt``, ``deliver.<agency>`` and ``audit``, each
    ``<kind>:<event id>``.
    """
    ids = {event.id for event in published}
    topics = exchange.settings.topics
    sources: list[tuple[str, str, Callable[[dict[str, Any]], object]]] = [
        ("receipt", topics.receipts("police"), lambda v: v["data"]["event_id"]),
        ("audit", topics.audit, lambda v: v["event_id"]),
    ]
    sources += [(f"deliver.{a}", topics.deliver(a), lambda v: v["id"]) for a in ENTITLED]
    copies: Counter[str] = Counter()
    for kind, topic, event_id in sources:
        async for record in read_topic(exchange.settings, topic):
            try:  # the topics are shared: other tests' records, raw bytes among them
                about = event_id(json.loads(record.value or b""))
            except (ValueError, TypeError, KeyError):
                continue
            if about in ids:
                copies[f"{kind}:{about}"] += 1
    return copies


async def exactly_once(exchange: Exchange, published: list[PublishedEvent]) -> None:
    """Each published event's receipt, deliveries and audit record are on the broker once."""
    await all_delivered(exchange, published)
    copies = await committed_copies(exchange, published)
    kinds = ["receipt", "audit", *(f"deliver.{a}" for a in ENTITLED)]
    expected = Counter({f"{k}:{e.id}": 1 for k in kinds for e in published})
    doubled = sorted(k for k, n in copies.items() if n > 1)
    lost = sorted(k for k in expected if k not in copies)
    by_kind = Counter(k.split(":")[0] for k in lost + doubled)
    assert (lost, doubled) == ([], []), f"{len(lost)} lost, {len(doubled)} doubled: {by_kind}"
    assert copies == expected


async def paused_broker(
    exchange: Exchange, pause: Callable[[], None], resume: Callable[[], None], start: int
) -> None:
    """The broker stopped for 6 s: a publish fails clearly or succeeds, the same worker goes on.

    ``pause`` and ``resume`` SIGSTOP and SIGCONT the broker.
    """
    before = await publish(exchange, start, 49)
    # A short send bound, so the test sees it fire while the broker is stopped (the exchange
    # closes this client with its own).
    client = exchange.client("police", exchange.pki.keys["police"], send_timeout=3.0)
    before += [await client.publish(residents(start + 49, 1)[0])]  # connected before the pause
    pause()
    try:
        during = asyncio.create_task(
            asyncio.wait_for(client.publish(residents(start + 50, 1)[0]), 20)
        )
        await asyncio.sleep(6)
    finally:
        resume()
    outcome = await asyncio.gather(during, return_exceptions=True)
    assert not isinstance(outcome[0], TimeoutError), "publish hung past its bound"
    if isinstance(outcome[0], BaseException):
        assert isinstance(outcome[0], TransportError)
        assert "did not acknowledge within 3s" in str(outcome[0])
    worker = exchange.worker.pid
    after = await publish(exchange, start + 51, 50)
    await all_delivered(exchange, before + after)
    assert exchange.worker.pid == worker is not None  # the same worker, never restarted
    assert exchange.worker.running
