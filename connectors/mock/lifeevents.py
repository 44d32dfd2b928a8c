"""Life events played across the four mock agencies: birth, death, land transfer, admission.

Each story starts with what one agency publishes or asks; the rest happens on the exchange, as
each agency's connector reacts to its deliveries (``react_forever``)::

    birth       health: birth certificate -> police register the child (-> health, education,
                land) and education notes it -> health issues the child's card (-> police)
    death       health: death certificate -> police: resident deceased -> health closes the
                card (-> police), land flags the parcels
    transfer    land asks police to verify the transferee -> police answer -> land registers
                the transfer (-> police)
    admission   education asks police to verify the residence -> police answer -> education
                enrols the pupil (-> health) -> health moves the card to group HS (-> police)

A story first publishes what it needs and the world lacks (parents, a card, a parcel), and says
which events it published and which it set in motion, so a demo or a test can wait for them.

    agencies = MockAgencies.build(clients, rng)
    tasks = [asyncio.create_task(react_forever(a)) for a in agencies]
    played = await LifeEvents(agencies, rng).play_birth(today)
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Literal, Protocol

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.errors import ConnectorError
from connectors.mock.education import EducationConnector
from connectors.mock.health import HealthConnector
from connectors.mock.land import LandConnector, ParcelKey
from connectors.mock.people import (
    CHILD_CARD_AGE,
    ENTRY_GRADES,
    Person,
    grade_in,
    resident_aged,
    school_year,
)
from connectors.mock.police import PoliceConnector
from gateway.core.envelope import subject_digest
from gateway.core.policy import Policy
from schemas.base import RequestModel, ResponseModel
from schemas.education import StudentEnrolled
from schemas.health import BirthCertificateIssued, DeathCertificateIssued, HealthInsuranceCardIssued
from schemas.land import LandTransferRegistered, LandUseRightCertificateIssued
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentDeceased,
    ResidentRegistered,
)
from schemas.registry import REGISTRY

log = logging.getLogger("xgw.mock.lifeevents")
Story = Literal["birth", "death", "land_transfer", "school_admission"]
STORIES: tuple[Story, ...] = ("birth", "death", "land_transfer", "school_admission")


class MockAgency(Protocol):
    """What every mock connector offers: its own stream and its reactions to deliveries."""

    @property
    def agency(self) -> str:
        """The agency id."""

    @property
    def client(self) -> AgencyClient:
        """The exchange client it publishes, asks and subscribes with."""

    async def publish_next(self, today: date) -> PublishedEvent | None:
        """Publish the agency's next event (``None`` when an attempt published nothing)."""

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        """React to one delivery; return what was published in reaction."""


CONNECTORS: Mapping[str, Callable[[AgencyClient, random.Random], MockAgency]] = {
    "police": PoliceConnector,
    "health": HealthConnector,
    "education": EducationConnector,
    "land": LandConnector,
}


def connector_for(agency: str, client: AgencyClient, rng: random.Random) -> MockAgency:
    """The mock connector of ``agency``; ``KeyError`` for an agency the mock world lacks."""
    return CONNECTORS[agency](client, rng)


@dataclass(frozen=True)
class MockAgencies:
    """The four mock agencies of one world."""

    police: PoliceConnector
    health: HealthConnector
    education: EducationConnector
    land: LandConnector

    @classmethod
    def build(cls, clients: Mapping[str, AgencyClient], rng: random.Random) -> MockAgencies:
        """Connectors over ``clients`` (one per agency id), sharing ``rng``."""
        return cls(
            PoliceConnector(clients["police"], rng),
            HealthConnector(clients["health"], rng),
            EducationConnector(clients["education"], rng),
            LandConnector(clients["land"], rng),
        )

    def __iter__(self) -> Iterator[MockAgency]:
        return iter((self.police, self.health, self.education, self.land))


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a story: who publishes it and its type."""

    agency: str
    type: str


@dataclass(frozen=True)
class Played:
    """What a story published itself, and every event it set in motion, in causal order."""

    story: Story
    outcome: str
    subject: str  # the protagonist's subject digest, as on every event about them
    published: tuple[PublishedEvent, ...]
    steps: tuple[Step, ...] = ()

    def expected_deliveries(self, policy: Policy) -> list[tuple[str, str]]:
        """``(recipient, type)`` of every delivery the steps cause under ``policy``.

        A request goes to its answerer when the policy lets the step's agency ask; the response
        goes back to the agency whose request came just before it.
        """
        deliveries: list[tuple[str, str]] = []
        asked_by: str | None = None
        for step in self.steps:
            model = REGISTRY.model_for(step.type)
            if model is not None and issubclass(model, RequestModel):
                rule = policy.request_rule(step.type)
                asked_by = None
                if rule is not None and rule.requester(step.agency) is not None:
                    asked_by = step.agency
                    deliveries.append((rule.answerer, step.type))
            elif model is not None and issubclass(model, ResponseModel):
                if asked_by is not None:
                    deliveries.append((asked_by, step.type))
                asked_by = None
            elif (route := policy.route_for(step.type)) is not None:
                deliveries.extend((grant.agency, step.type) for grant in route.recipients)
        return deliveries


class LifeEvents:
    """Plays life events across the four mock agencies; each ``play_*`` starts one story."""

    def __init__(self, agencies: MockAgencies, rng: random.Random) -> None:
        self.agencies = agencies
        self._rng = rng
        self._busy: set[str] = set()  # people a story has used up (the dead, the enrolled)

    async def play(self, story: Story, today: date) -> Played:
        """Play ``story``."""
        plays: dict[Story, Callable[[date], Awaitable[Played]]] = {
            "birth": self.play_birth,
            "death": self.play_death,
            "land_transfer": self.play_land_transfer,
            "school_admission": self.play_school_admission,
        }
        return await plays[story](today)

    async def play_any(self, today: date) -> Played:
        """Play a story drawn at random (births and admissions are the most frequent)."""
        story = self._rng.choices(STORIES, weights=(4, 1, 2, 3))[0]
        return await self.play(story, today)

    async def populate(self, today: date, count: int) -> list[PublishedEvent]:
        """Have police register ``count`` adults, so that stories find people to be about."""
        published: list[PublishedEvent] = []
        while len(published) < count:
            event = await self.agencies.police.register_resident(
                resident_aged(self._rng, today, 18, 80)
            )
            if event is not None:
                published.append(event)
        return published

    # --- the stories -----------------------------------------------------------------------

    async def play_birth(self, today: date) -> Played:
        """Health certifies a birth to registered parents; police and education follow."""
        setup: list[PublishedEvent] = []
        mother = await self._someone(today, 18, 45, setup, female=True)
        father = await self._someone(today, 20, 60, setup, female=False)
        birth = await self.agencies.health.record_birth(
            today, mother=Person.of(mother), father=Person.of(father)
        )
        steps = [
            *(Step("police", ResidentRegistered.event_type) for _ in setup),
            Step("health", BirthCertificateIssued.event_type),
            Step("police", ResidentRegistered.event_type),
            Step("health", HealthInsuranceCardIssued.event_type),
        ]
        return Played("birth", "published", birth.subject, (*setup, birth), tuple(steps))

    async def play_death(self, today: date) -> Played:
        """Health certifies the death of an insured landholder; police, health, land follow."""
        setup: list[PublishedEvent] = []
        steps: list[Step] = []
        dying = await self._someone(today, 40, 90, setup, female=None)
        steps += [Step("police", ResidentRegistered.event_type) for _ in setup]
        self._busy.add(dying.personal_id)
        person = Person.of(dying)
        if dying.personal_id not in self.agencies.health.cards:
            setup.append(await self.agencies.health.issue_card(person, today))
            steps.append(Step("health", HealthInsuranceCardIssued.event_type))
        if not self.agencies.land.parcels_of(dying.personal_id):
            setup.append(await self.agencies.land.issue_certificate(person, today))
            steps.append(Step("land", LandUseRightCertificateIssued.event_type))
        death = await self.agencies.health.record_death(person, today)
        steps += [
            Step("health", DeathCertificateIssued.event_type),
            Step("police", ResidentDeceased.event_type),
            Step("health", HealthInsuranceCardIssued.event_type),
        ]
        return Played("death", "published", death.subject, (*setup, death), tuple(steps))

    async def play_land_transfer(self, today: date) -> Played:
        """Land sells a living holder's parcel to a registered resident, verified by police."""
        setup: list[PublishedEvent] = []
        steps: list[Step] = []
        key = self._transferable()
        if key is None:
            holder = await self._someone(today, 25, 80, setup, female=None)
            steps += [Step("police", ResidentRegistered.event_type) for _ in setup]
            setup.append(await self.agencies.land.issue_certificate(Person.of(holder), today))
            steps.append(Step("land", LandUseRightCertificateIssued.event_type))
            key = self.agencies.land.parcels_of(holder.personal_id)[-1]
        holder_id = self.agencies.land.holdings[key].personal_id
        registered = len(setup)
        buyer = await self._someone(today, 18, 80, setup, female=None, besides=holder_id)
        steps += [Step("police", ResidentRegistered.event_type) for _ in setup[registered:]]
        transfer = await self.agencies.land.transfer(key, Person.of(buyer), today, "sale")
        steps += [
            Step("land", IdentityVerificationRequested.event_type),
            Step("police", IdentityVerified.event_type),
        ]
        published = list(setup)
        if transfer.published is not None:
            published.append(transfer.published)
            steps.append(Step("land", LandTransferRegistered.event_type))
        subject = subject_digest(buyer.personal_id)
        return Played("land_transfer", transfer.outcome, subject, tuple(published), tuple(steps))

    async def play_school_admission(self, today: date) -> Played:
        """Education admits a registered child after police confirm the declared residence."""
        setup: list[PublishedEvent] = []
        year, _ = school_year(today)
        police = self.agencies.police
        candidates = [
            r
            for r in police.living()
            if r.personal_id not in self._busy
            and grade_in(r.date_of_birth, year) in ENTRY_GRADES
            and self.agencies.education.pupils.get(r.personal_id) != year
        ]
        if candidates:
            child = self._rng.choice(candidates)
        else:
            child = await self._new_pupil(today, year, setup)
        self._busy.add(child.personal_id)
        home = police.current_address(child.personal_id, "permanent") or child.permanent_address
        person = Person(child.personal_id, child.full_name, child.date_of_birth, child.sex, home)
        admission = await self.agencies.education.admit(person, today)
        steps = [Step("police", ResidentRegistered.event_type) for _ in setup]
        if setup and Person.of(child).age_on(today) < CHILD_CARD_AGE:
            # Registering a child under six makes health issue the child's card (TE).
            steps.append(Step("health", HealthInsuranceCardIssued.event_type))
        steps += [
            Step("education", ResidenceVerificationRequested.event_type),
            Step("police", ResidenceVerified.event_type),
        ]
        published = list(setup)
        if admission.published is not None:
            published.append(admission.published)
            steps += [
                Step("education", StudentEnrolled.event_type),
                Step("health", HealthInsuranceCardIssued.event_type),
            ]
        subject = subject_digest(child.personal_id)
        return Played(
            "school_admission", admission.outcome, subject, tuple(published), tuple(steps)
        )

    # --- casting ---------------------------------------------------------------------------

    async def _someone(
        self,
        today: date,
        youngest: int,
        oldest: int,
        setup: list[PublishedEvent],
        *,
        female: bool | None,
        besides: str | None = None,
    ) -> ResidentRegistered:
        """A living registered resident of that age (and sex), registered now if none is."""
        sex = None if female is None else ("female" if female else "male")
        fitting = [
            r
            for r in self.agencies.police.living()
            if youngest <= Person.of(r).age_on(today) <= oldest
            and (sex is None or r.sex == sex)
            and r.personal_id not in self._busy
            and r.personal_id != besides
        ]
        if fitting:
            return self._rng.choice(fitting)
        while True:
            person = resident_aged(self._rng, today, youngest, oldest, female=female)
            published = await self.agencies.police.register_resident(person)
            if published is not None:
                setup.append(published)
                return person

    async def _new_pupil(
        self, today: date, year: str, setup: list[PublishedEvent]
    ) -> ResidentRegistered:
        """Register a child who starts grade 1 in school year ``year``."""
        while True:
            child = resident_aged(self._rng, today, 5, 7)
            if grade_in(child.date_of_birth, year) != 1:
                continue
            published = await self.agencies.police.register_resident(child)
            if published is not None:
                setup.append(published)
                return child

    def _transferable(self) -> ParcelKey | None:
        land = self.agencies.land
        police = self.agencies.police
        keys = [
            key
            for key, held in land.holdings.items()
            if held.personal_id not in land.deceased
            and held.personal_id not in self._busy
            and police.resident(held.personal_id) is not None
        ]
        return self._rng.choice(keys) if keys else None


async def react_forever(
    connector: MockAgency,
    *,
    group: str | None = None,
    ready: asyncio.Event | None = None,
    on_delivery: Callable[[ReceivedEvent, list[PublishedEvent]], None] | None = None,
) -> None:
    """Handle each verified delivery of ``connector``'s agency until cancelled.

    A reaction that fails (an invalid event, a field the policy no longer grants, a broker
    error) is logged with ids and reason only, and the loop goes on with the next delivery.
    """
    async for delivery in connector.client.subscribe(group=group, ready=ready):
        try:
            published = await connector.handle(delivery)
        except (ConnectorError, LookupError, ValueError) as exc:
            log.warning(
                "reaction failed agency=%s event_id=%s type=%s error=%s",
                connector.agency,
                delivery.id,
                delivery.type,
                type(exc).__name__,
            )
            continue
        if on_delivery is not None:
            on_delivery(delivery, published)
