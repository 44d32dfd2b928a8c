"""A running exchange for integration tests: a worker process and agency clients on the broker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.client import AgencyClient, Receipt, ReceivedEvent
from connectors.transport import KafkaTransport, Message
from gateway.lab.forgery import Forger
from gateway.lab.processes import WorkerProcess, scrape
from gateway.settings import Settings, settings_env
from gateway.wire.keys import SigningKey
from tests.conftest import AGENCIES, BrokerUnderTest, Pki

WAIT_S = 20.0
T = TypeVar("T")


@dataclass
class Exchange:
    """A worker, one client per agency, and everything the clients have seen so far."""

    settings: Settings
    pki: Pki
    worker: WorkerProcess
    clients: dict[str, AgencyClient]
    forger: Forger
    receipts: dict[str, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    deliveries: dict[str, list[ReceivedEvent]] = field(default_factory=lambda: defaultdict(list))
    dead_letters: list[Message] = field(default_factory=list)
    # Each agency's own settings (its Kafka user on a broker with ACLs); else the exchange's.
    principals: dict[str, Settings] = field(default_factory=dict)

    def client(self, agency: str, key: SigningKey, **transport_options: Any) -> AgencyClient:
        """Another client of ``agency`` that signs with ``key`` (rotation, revocation)."""
        settings = self.principals.get(agency, self.settings)
        made = AgencyClient(
            agency=agency,
            signing_key=key,
            trust=self.pki.fresh_trust(),
            transport=KafkaTransport(settings.kafka_options(), **transport_options),
            topics=self.settings.topics,
        )
        self.clients[f"{agency}#{len(self.clients)}"] = made
        return made

    async def wait_for(self, what: str, found: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            result = found()
            if result:
                return result
            await asyncio.sleep(0.05)
        text = await asyncio.to_thread(Path(self.worker.log_path).read_text, "utf-8")
        pytest.fail(f"timed out waiting for {what}; worker log tail:\n{text[-3000:]}")

    async def metric(self, name: str) -> float:
        """One sample of the worker's /metrics, 0 when absent."""
        return (await asyncio.to_thread(scrape, self.worker.metrics_url)).get(name, 0.0)

    async def receipt_for(self, agency: str, raw: bytes, status: str) -> Receipt:
        digest = hashlib.sha256(raw).hexdigest()

        def found() -> Receipt | None:
            matches = [
                r for r in self.receipts[agency] if r.record_sha256 == digest and r.status == status
            ]
            return matches[0] if matches else None

        return await self.wait_for(f"{status} receipt to {agency}", found)

    async def delivered(self, agency: str, event_id: str) -> ReceivedEvent:
        def found() -> ReceivedEvent | None:
            matches = [e for e in self.deliveries[agency] if e.id == event_id]
            return matches[0] if matches else None

        return await self.wait_for(f"delivery of {event_id} to {agency}", found)


def _client(settings: Settings, pki: Pki, agency: str) -> AgencyClient:
    return AgencyClient(
        agency=agency,
        signing_key=pki.keys[agency],
        trust=pki.fresh_trust(),
        transport=KafkaTransport(settings.kafka_options()),
        topics=settings.topics,
    )


def xgw(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``xgw ARGS`` in a child process with ``settings`` as its ``XGW_*`` environment."""
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **settings_env(settings)},
        timeout=timeout,
        check=False,
    )


def settings_on(broker: BrokerUnderTest, pki_dir: Path, prefix: str, **overrides: Any) -> Settings:
    """:func:`exchange_settings` on ``broker`` (the ``any_broker`` fixture), with its connection."""
    return exchange_settings(
        broker.bootstrap_servers, pki_dir, prefix, **(broker.connection | overrides)
    )


def exchange_settings(bootstrap: str, pki_dir: Path, prefix: str, **overrides: Any) -> Settings:
    """Settings of an isolated test exchange: its own topic prefix and consumer group."""
    values: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "app_id": f"xgw-{prefix}",
        "pki_dir": pki_dir,
        "metrics_port": 0,
        "log_format": "json",
    }
    return Settings(**(values | overrides))


@contextlib.asynccontextmanager
async def running_exchange(
    settings: Settings,
    pki: Pki,
    log_dir: Path,
    principal: Callable[[str], Settings] | None = None,
) -> AsyncIterator[Exchange]:
    """Start a worker and the agencies' subscriptions; stop everything on exit.

    ``principal(agency)`` gives each agency client its own settings (its Kafka user on a
    broker with ACLs); by default every client uses ``settings``.
    """
    worker = WorkerProcess(settings, log_dir / "worker.log")
    worker.start()
    tasks: list[asyncio.Task[None]] = []
    clients: dict[str, AgencyClient] = {}
    exchange: Exchange | None = None
    try:
        await worker.wait_ready(60)
        principals = {a: principal(a) for a in AGENCIES} if principal else {}
        clients = {
            agency: _client(principals.get(agency, settings), pki, agency) for agency in AGENCIES
        }
        forger = Forger(pki.keys, pki.ca, settings.max_record_bytes, settings.max_string_chars)
        exchange = Exchange(settings, pki, worker, clients, forger, principals=principals)
        tasks = await _subscribe(exchange)
        yield exchange
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for made in clients.values():
            await made.close()
        worker.stop()
        if exchange is not None:
            exchange.worker.stop()  # a test may have replaced the worker


async def _subscribe(exchange: Exchange) -> list[asyncio.Task[None]]:
    ready: list[asyncio.Event] = []
    clients = exchange.clients

    def signal() -> asyncio.Event:
        ready.append(asyncio.Event())
        return ready[-1]

    async def receipts(agency: str, event: asyncio.Event) -> None:
        async for receipt in clients[agency].receipts(group=f"{agency}-r", ready=event):
            exchange.receipts[agency].append(receipt)

    async def deliveries(agency: str, event: asyncio.Event) -> None:
        async for delivery in clients[agency].subscribe(group=f"{agency}-d", ready=event):
            exchange.deliveries[agency].append(delivery)

    async def dead_letters(event: asyncio.Event) -> None:
        transport = KafkaTransport(exchange.settings.kafka_options())
        topics = [exchange.settings.topics.deadletter]
        group = f"{exchange.settings.app_id}-ops"  # the gateway's groups: xgw-...
        async for message in transport.consume(topics, group=group, ready=event):
            exchange.dead_letters.append(message)

    coroutines = [
        *(receipts(a, signal()) for a in AGENCIES),
        *(deliveries(a, signal()) for a in AGENCIES),
        dead_letters(signal()),
    ]
    tasks = [asyncio.create_task(c) for c in coroutines]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
    return tasks
