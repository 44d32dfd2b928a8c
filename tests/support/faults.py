"""The fault scenarios both brokers run (tests/system/test_faults.py, tests/apache_kafka)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.client import PublishedEvent
from gateway.lab.processes import WorkerProcess
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


async def sigkill_mid_stream_then_restart(exchange: Exchange, log_dir: Path, start: int) -> None:
    """A worker killed mid-stream and restarted delivers every event once to each recipient."""
    first = await publish(exchange, start, 150)
    stream = asyncio.create_task(publish(exchange, start + 150, 150))
    await exchange.wait_for("some receipts", lambda: len(exchange.receipts["police"]) >= 20)
    exchange.worker.kill()
    rest = await stream
    await restart(exchange, log_dir / "restarted.log")
    await all_delivered(exchange, first + rest)


async def two_workers_one_killed(exchange: Exchange, log_dir: Path, start: int) -> None:
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
