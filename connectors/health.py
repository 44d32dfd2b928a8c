"""Mock connector of the Department of Health: receives residents, records vaccinations."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import date

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.people import vaccination
from schemas.police import ResidentRegistered


class HealthConnector:
    """Keeps a health insurance enrolment list from police deliveries; publishes vaccinations."""

    agency = "health"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.enrolled: dict[str, str] = {}  # subject digest -> personal id

    async def deliveries(
        self, *, group: str | None = None, ready: asyncio.Event | None = None
    ) -> AsyncIterator[ReceivedEvent]:
        """Yield each verified delivery after updating the enrolment list."""
        async for event in self.client.subscribe(group=group, ready=ready):
            personal_id = getattr(event.data, "personal_id", None)
            if isinstance(personal_id, str):
                self.enrolled[event.subject] = personal_id
            yield event

    async def record_vaccination(self, person: ResidentRegistered, today: date) -> PublishedEvent:
        """Publish a vaccination (the policy does not route these yet: no_recipients)."""
        return await self.client.publish(vaccination(self._rng, person, today))
