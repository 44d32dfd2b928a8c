"""Publish one residence registration as the police, and receive it as health.

The README's agency snippet, complete and runnable. Against a running exchange (see the
README, "Run a worker by hand"), from the repository's folder:

    XGW_BOOTSTRAP_SERVERS=127.0.0.1:9092 .venv/bin/python examples/agency_quickstart.py

It prints the police's receipt and what health received: only the fields the policy grants
health for its purpose, each verified against the police's signature.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import date
from typing import TypeVar

from connectors import AgencyClient, Receipt, ReceivedEvent
from schemas.common import Address
from schemas.police import ResidentRegistered

WAIT_SECONDS = 30.0
T = TypeVar("T")


async def main() -> int:
    """Publish, wait for the receipt and the delivery, print both; 0 when accepted."""
    # Keys, certificates and the broker come from the XGW_* settings (XGW_PKI_DIR: var/pki).
    police = AgencyClient.from_settings("police")
    health = AgencyClient.from_settings("health")
    run = uuid.uuid4().hex[:8]  # consumer groups of its own: it takes nothing from a live agency
    receipts: asyncio.Queue[Receipt] = asyncio.Queue()
    deliveries: asyncio.Queue[ReceivedEvent] = asyncio.Queue()

    async def listen_receipts(ready: asyncio.Event) -> None:
        async for receipt in police.receipts(group=f"police-quickstart-{run}", ready=ready):
            await receipts.put(receipt)

    async def listen_deliveries(ready: asyncio.Event) -> None:
        async for event in health.subscribe(group=f"health-quickstart-{run}", ready=ready):
            await deliveries.put(event)

    ready = [asyncio.Event(), asyncio.Event()]
    tasks = [
        asyncio.create_task(listen_receipts(ready[0])),
        asyncio.create_task(listen_deliveries(ready[1])),
    ]
    try:
        for event in ready:
            await asyncio.wait_for(event.wait(), WAIT_SECONDS)
        # The personal id agrees with the birth date and sex (CCCD rules); the commune is one of
        # the list in force since 1 July 2025, with its official name.
        published = await police.publish(
            ResidentRegistered(
                personal_id="079190012345",
                full_name="Nguyễn Thị Minh Khai",
                date_of_birth=date(1990, 5, 17),
                sex="female",
                permanent_address=Address(
                    street="12 Lê Lợi",
                    commune_code="26740",
                    commune_name="Phường Sài Gòn",
                    province_code="79",
                    province_name="Thành phố Hồ Chí Minh",
                ),
                registered_on=date(2026, 11, 20),
            )
        )
        print(f"published {published.id}")
        receipt = await _first(receipts, lambda r: r.event_id == published.id)
        if receipt.status != "accepted":
            print(f"receipt: {receipt.status} ({receipt.reason}: {receipt.detail})")
            return 1
        print(f"receipt: accepted, delivered to {', '.join(receipt.recipients)}")
        delivered = await _first(deliveries, lambda e: e.id == published.id)
        print(f"health received {sorted(delivered.fields)} for {delivered.purpose}")
        print(f"  legal basis: {delivered.legal_basis}")
        return 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await police.close()
        await health.close()


async def _first(queue: asyncio.Queue[T], wanted: Callable[[T], bool]) -> T:
    """The first item of ``queue`` that is ``wanted``, waiting at most WAIT_SECONDS."""

    async def find() -> T:
        while True:
            item = await queue.get()
            if wanted(item):
                return item

    return await asyncio.wait_for(find(), WAIT_SECONDS)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
