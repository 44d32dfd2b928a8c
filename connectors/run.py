"""``xgw agency <agency>``: one mock agency system running against an exchange, until stopped.

It logs each verified delivery and each receipt (ids, types, purposes, reasons: never a field
value) and, for agencies that publish in the mock world (the police), publishes a steady stream
of realistic events. docker-compose runs one per agency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from datetime import UTC, datetime

from connectors.client import AgencyClient
from connectors.police import PoliceConnector
from connectors.transport import KafkaTransport
from gateway.logs import configure_logging, get_logger
from gateway.pki import load_signing_key
from gateway.settings import Settings
from gateway.x509trust import X509TrustStore

log = get_logger("xgw.agency")
PUBLISHERS = frozenset({"police"})


async def run_agency(settings: Settings, agency: str, rate: float, stop: asyncio.Event) -> None:
    """Subscribe to ``agency``'s deliveries and receipts; publish at ``rate`` per second."""
    client = AgencyClient(
        agency=agency,
        signing_key=load_signing_key(settings.pki_dir, agency),
        trust=X509TrustStore.from_directory(settings.pki_dir),
        transport=KafkaTransport(settings.kafka_options()),
        topics=settings.topics,
    )

    async def deliveries() -> None:
        async for event in client.subscribe():
            log.info(
                "delivery",
                event_id=event.id,
                type=event.type,
                purpose=event.purpose,
                source=event.source_agency,
                fields=len(event.fields),
            )

    async def receipts() -> None:
        async for receipt in client.receipts():
            log.info(
                "receipt", event_id=receipt.event_id, status=receipt.status, reason=receipt.reason
            )

    async def publish() -> None:
        police = PoliceConnector(client, random.Random())  # noqa: S311 - fake data
        while not stop.is_set():
            await police.publish_next(datetime.now(UTC).date())
            await asyncio.sleep(1.0 / rate)

    tasks = [asyncio.create_task(deliveries()), asyncio.create_task(receipts())]
    publishing = agency in PUBLISHERS and rate > 0
    if publishing:
        tasks.append(asyncio.create_task(publish()))
    log.info("agency connector running", agency=agency, publishing=publishing)
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def main(settings: Settings, agency: str, rate: float, duration: float | None) -> None:
    """Run one mock agency until SIGINT/SIGTERM or ``duration`` seconds."""
    configure_logging(settings.log_level, settings.log_format)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if duration is not None:
            loop.call_later(duration, stop.set)
        await run_agency(settings, agency, rate, stop)

    asyncio.run(go())
