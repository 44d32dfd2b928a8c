"""``xgw agency <agency>``: one mock agency system running against an exchange, until stopped.

Any of the four agencies (police, health, education, land): it publishes a steady stream of
its realistic events, reacts to each verified delivery as its mock connector does (police
register newborns and answer verification requests, health closes the card of the deceased,
...), and logs each delivery and each receipt (ids, types, purposes, reasons: never a field
value). docker-compose runs one per agency.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.errors import ConnectorError
from connectors.mock.lifeevents import CONNECTORS, MockAgency, connector_for, react_forever
from connectors.mock.people import local_day
from gateway.logs import configure_logging, get_logger
from gateway.runtime.stopping import stop_on_signals
from gateway.settings import Settings
from gateway.trust.checkpoint import Standing

log = get_logger("xgw.agency")


async def run_agency(settings: Settings, agency: str, rate: float, stop: asyncio.Event) -> None:
    """Subscribe to deliveries, receipts and audit checkpoints; publish at ``rate`` per second.

    The audit checkpoints the agency holds are kept in ``XGW_CHECKPOINT_DIR/<agency>.jsonl``.
    """
    client = AgencyClient.from_settings(agency, settings)

    # An agency of the policy that the mock world does not model only logs its deliveries.
    rng = random.Random()  # noqa: S311 - fake data, not secrets
    connector = connector_for(agency, client, rng) if agency in CONNECTORS else None

    def logged(event: ReceivedEvent, reactions: list[PublishedEvent]) -> None:
        log.info(
            "delivery",
            event_id=event.id,
            type=event.type,
            purpose=event.purpose,
            source=event.source_agency,
            fields=len(event.fields),
            reactions=len(reactions),
        )

    async def deliveries() -> None:
        if connector is not None:
            await react_forever(connector, on_delivery=logged)
            return
        async for event in client.subscribe():
            logged(event, [])

    async def receipts() -> None:
        async for receipt in client.receipts():
            log.info(
                "receipt", event_id=receipt.event_id, status=receipt.status, reason=receipt.reason
            )

    failing: list[str] = []  # the current publish error, logged once until it changes
    published = 0

    async def publish(connector: MockAgency) -> None:
        nonlocal published
        while not stop.is_set():
            try:
                await connector.publish_next(local_day(datetime.now(UTC)))
            except ConnectorError as exc:
                # An unanswered request or a refused event must not stop the stream; the cause
                # is logged once, not at every attempt.
                if failing != [str(exc)]:
                    log.warning("publish failing", agency=agency, error=str(exc))
                    failing[:] = [str(exc)]
            else:
                published += 1
                if failing:
                    log.info("publish recovered", agency=agency)
                    failing.clear()
            await asyncio.sleep(1.0 / rate)

    tasks = [
        asyncio.create_task(deliveries()),
        asyncio.create_task(receipts()),
        asyncio.create_task(hold_checkpoints(client, settings.checkpoint_dir / f"{agency}.jsonl")),
    ]
    publishing = connector is not None and rate > 0
    if connector is not None and publishing:
        tasks.append(asyncio.create_task(publish(connector)))
    log.info("agency connector running", agency=agency, publishing=publishing)
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    finally:
        ended = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        stopped.cancel()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        with contextlib.suppress(ConnectorError, TimeoutError):
            await asyncio.wait_for(client.close(), 5)
    if ended:  # a subscription that fails stops the connector: its supervisor restarts it
        raise ConnectorError(f"agency {agency} stopped: {ended[0].exception()}")
    if publishing and not published and failing:
        raise ConnectorError(f"agency {agency} published nothing: {failing[0]}")


async def hold_checkpoints(client: AgencyClient, path: Path) -> None:
    """Keep the audit trail's checkpoints in ``path``; log each newer one held."""
    keeper = client.checkpoint_keeper(path)
    async for judgement in client.checkpoints(keeper):
        if judgement.standing is not Standing.OLDER:
            latest = keeper.latest
            log.info(
                "audit checkpoint held",
                standing=judgement.standing.value,
                seq=latest.seq if latest else None,
            )


def main(settings: Settings, agency: str, rate: float, duration: float | None) -> None:
    """Run one mock agency until SIGINT/SIGTERM or ``duration`` seconds."""
    configure_logging(settings.log_level, settings.log_format)

    async def go() -> None:
        stop = asyncio.Event()
        stop_on_signals(stop, f"agency {agency}")
        loop = asyncio.get_running_loop()
        if duration is not None:
            loop.call_later(duration, stop.set)
        await run_agency(settings, agency, rate, stop)

    asyncio.run(go())
