"""Mock connector of the Department of Health: births, deaths, BHYT cards, vaccinations.

It learns residents from the police's registrations (health insurance enrolment), issues a
child's card (group TE) when police register a child under six, as the interlinked birth,
residence and insurance procedure does, moves enrolled pupils to the school group (HS), and
closes the card of a resident police report deceased.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import date
from typing import Any, Literal

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.mock.people import (
    CHILD_CARD_AGE,
    Person,
    bhyt_group,
    birth_certificate,
    card_terminated,
    death_certificate,
    insurance_card,
    local_day,
    resident_aged,
    vaccination,
    vaccination_of,
)
from schemas.education import StudentEnrolled
from schemas.health import HealthInsuranceCardIssued
from schemas.police import ResidentAddressChanged, ResidentDeceased, ResidentRegistered

MAX_PEOPLE = 50_000  # the mock's memory bound; the oldest entries are forgotten first


class HealthConnector:
    """Health's view of residents and their BHYT cards; publishes its own records."""

    agency = "health"

    def __init__(self, client: AgencyClient, rng: random.Random) -> None:
        self.client = client
        self._rng = rng
        self.enrolled: dict[str, str] = {}  # subject digest -> personal id
        self.residents: dict[str, Person] = {}  # from police registrations
        self.cards: dict[str, HealthInsuranceCardIssued] = {}  # personal id -> current card
        self.closed_cards = 0

    async def deliveries(
        self, *, group: str | None = None, ready: asyncio.Event | None = None
    ) -> AsyncIterator[ReceivedEvent]:
        """Yield each verified delivery after updating the enrolment list (no reactions)."""
        async for event in self.client.subscribe(group=group, ready=ready):
            personal_id = getattr(event.data, "personal_id", None)
            if isinstance(personal_id, str):
                self.enrolled[event.subject] = personal_id
            yield event

    # --- its own stream ----------------------------------------------------------------------

    async def publish_next(self, today: date) -> PublishedEvent:
        """Publish the next record: births 35 %, deaths 10 %, cards 45 %, vaccinations 10 %."""
        draw = self._rng.random()
        known = list(self.residents.values())
        if draw < 0.35 or not known:  # noqa: PLR2004 - event mix
            return await self.record_birth(today)
        if draw < 0.45:  # noqa: PLR2004 - event mix
            # The oldest of a few residents drawn at random: deaths come mostly late in life.
            drawn = [self._rng.choice(known) for _ in range(3)]
            return await self.record_death(min(drawn, key=lambda p: p.date_of_birth), today)
        if draw < 0.90:  # noqa: PLR2004 - event mix
            return await self.issue_card(self._rng.choice(known), today)
        return await self.client.publish(
            vaccination_of(self._rng, self._rng.choice(known).personal_id, today)
        )

    async def record_birth(
        self, today: date, *, mother: Person | None = None, father: Person | None = None
    ) -> PublishedEvent:
        """Publish a birth certificate; parents are drawn from known residents when not given."""
        if mother is None:
            mother = self._parent(today, "female", 18, 45) or Person.of(
                resident_aged(self._rng, today, 18, 45, female=True)
            )
        if father is None:
            father = self._parent(today, "male", 20, 60)
        return await self.client.publish(
            birth_certificate(self._rng, today, mother=mother, father=father)
        )

    def _parent(
        self, today: date, sex: Literal["male", "female"], youngest: int, oldest: int
    ) -> Person | None:
        fitting = [
            p
            for p in self.residents.values()
            if p.sex == sex and youngest <= p.age_on(today) <= oldest
        ]
        return self._rng.choice(fitting) if fitting else None

    async def record_death(self, person: Person, today: date) -> PublishedEvent:
        """Publish ``person``'s death certificate; the card closes when police confirm."""
        published = await self.client.publish(death_certificate(self._rng, person, today))
        self.residents.pop(person.personal_id, None)  # certified once
        return published

    async def issue_card(self, person: Person, today: date) -> PublishedEvent:
        """Issue ``person`` a card of the group their age suggests, or renew the one they hold."""
        held = self.cards.get(person.personal_id)
        if held is None:
            group = bhyt_group(self._rng, person.age_on(today))
            card = insurance_card(
                self._rng,
                person.personal_id,
                today,
                group=group,
                date_of_birth=person.date_of_birth,
            )
        else:
            card = insurance_card(
                self._rng,
                person.personal_id,
                today,
                group=held.card_number[:2],
                date_of_birth=person.date_of_birth,
                social_insurance=held.card_number[5:],
                change_kind=self._rng.choice(["renewed", "reissued"]),
            )
        return await self._publish_card(card)

    async def record_vaccination(self, person: ResidentRegistered, today: date) -> PublishedEvent:
        """Publish a vaccination (the policy does not route these yet: no_recipients)."""
        return await self.client.publish(vaccination(self._rng, person, today))

    async def _publish_card(self, card: HealthInsuranceCardIssued) -> PublishedEvent:
        published = await self.client.publish(card)
        if card.change_kind == "terminated":
            self.cards.pop(card.personal_id, None)
        else:
            self.cards[card.personal_id] = card
            if len(self.cards) > MAX_PEOPLE:
                del self.cards[next(iter(self.cards))]
        return published

    # --- reactions ---------------------------------------------------------------------------

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        """React to one delivery; return the cards published in reaction."""
        data: dict[str, Any] = dict(delivery.data)
        if delivery.type == ResidentRegistered.event_type:
            self.enrolled[delivery.subject] = data["personal_id"]
            return await self._registered(data, local_day(delivery.time))
        if delivery.type == ResidentAddressChanged.event_type:
            self._moved(data)
        elif delivery.type == ResidentDeceased.event_type:
            return await self._deceased(data)
        elif delivery.type == StudentEnrolled.event_type:
            return await self._pupil(data)
        return []

    async def _registered(self, data: dict[str, Any], day: date) -> list[PublishedEvent]:
        person = Person(
            data["personal_id"],
            data["full_name"],
            data["date_of_birth"],
            data.get("sex"),
            data.get("permanent_address"),
        )
        self.residents[person.personal_id] = person
        if len(self.residents) > MAX_PEOPLE:
            del self.residents[next(iter(self.residents))]
        today = max(person.date_of_birth, day)
        if person.personal_id in self.cards or person.age_on(today) >= CHILD_CARD_AGE:
            return []
        card = insurance_card(
            self._rng, person.personal_id, today, group="TE", date_of_birth=person.date_of_birth
        )
        return [await self._publish_card(card)]

    def _moved(self, data: dict[str, Any]) -> None:
        known = self.residents.get(data["personal_id"])
        if known is not None and data.get("residence_kind") == "permanent":
            self.residents[known.personal_id] = Person(
                known.personal_id,
                known.full_name,
                known.date_of_birth,
                known.sex,
                data["new_address"],
            )

    async def _deceased(self, data: dict[str, Any]) -> list[PublishedEvent]:
        self.residents.pop(data["personal_id"], None)
        held = self.cards.get(data["personal_id"])
        if held is None:
            return []
        self.closed_cards += 1
        return [await self._publish_card(card_terminated(held, data["date_of_death"]))]

    async def _pupil(self, data: dict[str, Any]) -> list[PublishedEvent]:
        """Move an enrolled pupil to the school group (HS), keeping their BHXH number."""
        held = self.cards.get(data["personal_id"])
        card = insurance_card(
            self._rng,
            data["personal_id"],
            data["start_date"],
            group="HS",
            social_insurance=held.card_number[5:] if held else None,
            change_kind="changed" if held else "issued",
        )
        return [await self._publish_card(card)]
