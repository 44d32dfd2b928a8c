"""Mock connector of the city police: publishes population events from its register."""

from __future__ import annotations

import random
from datetime import date

from connectors.client import AgencyClient, PublishedEvent
from connectors.people import address_change, resident
from schemas.police import ResidentRegistered


class PoliceConnector:
    """Publishes resident registrations and, for known residents, changes of address."""

    agency = "police"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.register: list[ResidentRegistered] = []

    async def publish_next(self, today: date) -> PublishedEvent:
        """Publish the next event: 70 % registrations, 30 % address changes."""
        if self.register and self._rng.random() < 0.3:  # noqa: PLR2004 - event mix
            person = self._rng.choice(self.register)
            return await self.client.publish(address_change(self._rng, person, today))
        person = resident(self._rng, today)
        self.register.append(person)
        return await self.client.publish(person)
