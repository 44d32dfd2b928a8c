"""Life events through the real broker: the four mock agencies react to what the gateway delivers.

One gateway worker and the four mock connectors (each reacting to its deliveries with
``react_forever``) run for the whole module; each test plays one story and checks every delivery
it caused against the shipped policy: the recipients, the fields granted, the purpose and the
legal basis, and that nothing else reached anyone.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from connectors.client import AgencyClient, PublishedEvent, ReceivedEvent
from connectors.errors import RequestRefused, RequestTimedOut
from connectors.mock.lifeevents import LifeEvents, MockAgencies, Played, Story, react_forever
from connectors.mock.people import local_day, resident_aged
from connectors.mock.police import PoliceConnector
from gateway.core.envelope import subject_digest
from gateway.core.policy import Grant, Policy
from gateway.reasons import ReasonCode
from schemas.base import RequestModel, ResponseModel
from schemas.education import StudentEnrolled
from schemas.health import (
    BirthCertificateIssued,
    DeathCertificateIssued,
    HealthInsuranceCardIssued,
)
from schemas.land import LandTransferRegistered
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentDeceased,
)
from schemas.registry import REGISTRY
from tests.conftest import AGENCIES, BrokerUnderTest, Pki
from tests.support.harness import Exchange, running_exchange, settings_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SEED = 2026
QUIET_S = 0.6  # after the expected deliveries arrived: time for an unexpected one to show up
Delivery = tuple[str, ReceivedEvent]  # (recipient, what it received)


class UnansweringPolice:
    """The police connector, except that requests about some subjects are left unanswered."""

    def __init__(self, police: PoliceConnector, unanswered: set[str]) -> None:
        self.police = police
        self.unanswered = unanswered

    @property
    def agency(self) -> str:
        return self.police.agency

    @property
    def client(self) -> AgencyClient:
        return self.police.client

    async def publish_next(self, today: date) -> PublishedEvent:
        return await self.police.publish_next(today)

    async def handle(self, delivery: ReceivedEvent) -> list[PublishedEvent]:
        if delivery.subject in self.unanswered:
            return []
        return await self.police.handle(delivery)


@dataclass
class World:
    """The running exchange, the mock agencies reacting on it, and the stories' player."""

    exchange: Exchange
    agencies: MockAgencies
    life: LifeEvents
    policy: Policy
    unanswered: set[str]  # subjects police leave requests about unanswered


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(
    any_broker: BrokerUnderTest,
    pki: Pki,
    policy: Policy,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[World]:
    settings = settings_on(any_broker, pki.directory, f"le{uuid.uuid4().hex[:8]}")
    log_dir: Path = tmp_path_factory.mktemp("log")
    async with running_exchange(settings, pki, log_dir) as exchange:
        rng = random.Random(SEED)
        agencies = MockAgencies.build(exchange.clients, rng)
        unanswered: set[str] = set()
        reacting = [
            UnansweringPolice(agencies.police, unanswered),
            agencies.health,
            agencies.education,
            agencies.land,
        ]
        ready = [asyncio.Event() for _ in reacting]
        tasks = [
            asyncio.create_task(react_forever(c, group=f"{c.agency}-react", ready=r))
            for c, r in zip(reacting, ready, strict=True)
        ]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
            yield World(exchange, agencies, LifeEvents(agencies, rng), policy, unanswered)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def today() -> date:
    return local_day(datetime.now(UTC))


async def play(world: World, story: Story) -> tuple[Played, list[Delivery]]:
    """Play ``story``; return it with every delivery it caused, once they all arrived."""
    deliveries = world.exchange.deliveries
    before = {agency: len(deliveries[agency]) for agency in AGENCIES}

    def caused() -> list[Delivery]:
        return [(a, e) for a in AGENCIES for e in deliveries[a][before[a] :]]

    played = await world.life.play(story, today())
    expected = Counter(played.expected_deliveries(world.policy))
    assert expected, played
    await world.exchange.wait_for(
        f"the deliveries of the {story}",
        lambda: Counter((a, e.type) for a, e in caused()) >= expected,
    )
    await asyncio.sleep(QUIET_S)
    seen = caused()
    assert Counter((a, e.type) for a, e in seen) == expected, "a delivery nobody is entitled to"
    for recipient, event in seen:
        assert_as_granted(world.policy, recipient, event)
    assert_answers_go_to_their_askers(seen)
    return played, seen


def grant_of(policy: Policy, recipient: str, event: ReceivedEvent) -> Grant:
    """What the policy grants ``recipient`` of ``event`` (fields, purpose, legal basis)."""
    model = REGISTRY.model_for(event.type)
    assert model is not None
    if issubclass(model, RequestModel):
        rule = policy.request_rule(event.type)
        assert rule is not None
        assert rule.answerer == recipient
        asked = rule.requester(event.source_agency)
        assert asked is not None
        return asked
    if issubclass(model, ResponseModel):
        rule = policy.request_rule(model.request_type)
        assert rule is not None
        assert rule.answerer == event.source_agency
        asked = rule.requester(recipient)
        assert asked is not None
        return Grant(
            agency=recipient,
            purpose=asked.purpose,
            legal_basis=asked.legal_basis,
            fields=asked.response_fields,
        )
    route = policy.route_for(event.type)
    assert route is not None
    assert route.publisher == event.source_agency
    (grant,) = [g for g in route.recipients if g.agency == recipient]
    return grant


def assert_as_granted(policy: Policy, recipient: str, event: ReceivedEvent) -> None:
    """The delivery holds exactly the granted fields, for the policy's purpose and basis."""
    grant = grant_of(policy, recipient, event)
    where = f"{event.type} to {recipient}"
    assert event.fields == grant.fields, where
    assert set(type(event.data).model_fields) == grant.fields, where
    assert event.purpose == grant.purpose, where
    assert event.legal_basis == grant.legal_basis, where


def assert_answers_go_to_their_askers(seen: list[Delivery]) -> None:
    """Each response answers a request of the story, and reaches the agency that asked it."""
    asked = {e.id: e.source_agency for _, e in seen if e.deadline is not None}
    answers = [(a, e) for a, e in seen if e.correlation_id is not None]
    assert len(answers) == len(asked)
    for recipient, answer in answers:
        assert asked.get(answer.correlation_id or "") == recipient


def only(seen: list[Delivery], recipient: str, event_type: str) -> ReceivedEvent:
    (event,) = [e for a, e in seen if a == recipient and e.type == event_type]
    return event


def field(event: ReceivedEvent, name: str) -> object:
    return getattr(event.data, name)


async def test_a_birth_registers_the_child_and_tells_education(world: World) -> None:
    """A birth: police register the child, education plans a place, the TE card reaches police."""
    played, seen = await play(world, "birth")
    assert played.outcome == "published"
    birth = only(seen, "police", BirthCertificateIssued.event_type)
    child = str(field(birth, "personal_id"))
    assert birth.subject == played.subject == subject_digest(child)
    assert only(seen, "education", BirthCertificateIssued.event_type).id == birth.id
    registered = world.agencies.police.resident(child)
    assert registered is not None
    assert world.agencies.education.children[child].address == registered.permanent_address
    card = only(seen, "police", HealthInsuranceCardIssued.event_type)
    assert str(field(card, "card_number")).startswith("TE")
    assert world.agencies.police.vneid_cards[child] == field(card, "card_number")


async def test_a_death_deregisters_closes_the_card_and_flags_the_land(world: World) -> None:
    """A death: police deregister, health closes the card, land flags the parcels."""
    played, seen = await play(world, "death")
    assert played.outcome == "published"
    death = only(seen, "police", DeathCertificateIssued.event_type)
    dead = str(field(death, "personal_id"))
    assert dead in world.agencies.police.deregistered
    assert only(seen, "health", ResidentDeceased.event_type).subject == death.subject
    assert only(seen, "land", ResidentDeceased.event_type).subject == death.subject
    closing = [
        e
        for a, e in seen
        if a == "police"
        and e.type == HealthInsuranceCardIssued.event_type
        and field(e, "change_kind") == "terminated"
    ]
    assert [field(e, "valid_to") for e in closing] == [field(death, "date_of_death")]
    assert dead not in world.agencies.health.cards
    assert dead not in world.agencies.police.vneid_cards
    land = world.agencies.land
    assert land.parcels_of(dead) != []
    assert set(land.parcels_of(dead)) <= set(land.flagged)


async def test_a_land_transfer_is_verified_with_police_then_registered(world: World) -> None:
    """Land asks police about the buyer, police answer land alone, land registers the transfer."""
    played, seen = await play(world, "land_transfer")
    assert played.outcome == "transferred"
    asked = only(seen, "police", IdentityVerificationRequested.event_type)
    assert asked.source_agency == "land"
    assert asked.subject == played.subject
    answer = only(seen, "land", IdentityVerified.event_type)
    assert answer.correlation_id == asked.id
    assert field(answer, "match") is True
    transfer = only(seen, "police", LandTransferRegistered.event_type)
    buyer = str(field(transfer, "personal_id"))
    assert subject_digest(buyer) == played.subject
    assert world.agencies.police.dwellings[buyer] >= 1
    assert buyer in {h.personal_id for h in world.agencies.land.holdings.values()}


async def test_a_school_admission_is_verified_with_police_then_enrolled(world: World) -> None:
    """Education asks police about the residence, enrols the pupil, health moves the card to HS."""
    played, seen = await play(world, "school_admission")
    assert played.outcome == "enrolled"
    asked = only(seen, "police", ResidenceVerificationRequested.event_type)
    assert asked.source_agency == "education"
    answer = only(seen, "education", ResidenceVerified.event_type)
    assert answer.correlation_id == asked.id
    assert field(answer, "match") is True
    pupil = str(field(only(seen, "health", StudentEnrolled.event_type), "personal_id"))
    assert subject_digest(pupil) == played.subject
    assert world.agencies.health.cards[pupil].card_number.startswith("HS")


async def test_a_request_nobody_answers_times_out(world: World) -> None:
    """Unanswered: RequestTimedOut and a timed_out receipt; late answers are refused."""
    person = resident_aged(random.Random(7), today(), 30, 60)
    subject = subject_digest(person.personal_id)
    world.unanswered.add(subject)
    question = IdentityVerificationRequested(
        personal_id=person.personal_id,
        full_name=person.full_name,
        date_of_birth=person.date_of_birth,
    )
    land = world.agencies.land.client
    with pytest.raises(RequestTimedOut) as timed_out:
        await land.request(question, timeout=2)
    assert timed_out.value.reason is ReasonCode.REQUEST_TIMEOUT
    exchange = world.exchange
    (asked,) = await exchange.wait_for(
        "the request at police",
        lambda: [e for e in exchange.deliveries["police"] if e.subject == subject],
    )
    receipts = await exchange.wait_for(
        "the timed_out receipt",
        lambda: [r for r in exchange.receipts["land"] if r.event_id == asked.id][1:],
    )
    statuses = [r.status for r in exchange.receipts["land"] if r.event_id == asked.id]
    assert statuses == ["accepted", "timed_out"]
    assert receipts[-1].reason == ReasonCode.REQUEST_TIMEOUT.value
    # Police answer after the deadline: refused, and land receives nothing.
    police = world.agencies.police
    late = await police.client.respond(asked, police.verify_identity(dict(asked.data)))
    refused = await exchange.receipt_for("police", late.record, "rejected")
    assert refused.reason == ReasonCode.REQUEST_EXPIRED.value
    await asyncio.sleep(QUIET_S)
    for agency in AGENCIES:
        assert late.id not in {e.id for e in exchange.deliveries[agency]}


async def test_a_request_by_an_agency_not_entitled_to_ask_is_refused(world: World) -> None:
    """Health may not ask police to verify an identity: refused, and police hear nothing of it."""
    person = resident_aged(random.Random(8), today(), 30, 60)
    subject = subject_digest(person.personal_id)
    question = IdentityVerificationRequested(
        personal_id=person.personal_id,
        full_name=person.full_name,
        date_of_birth=person.date_of_birth,
    )
    with pytest.raises(RequestRefused) as refused:
        await world.agencies.health.client.request(question, timeout=5)
    assert refused.value.reason is ReasonCode.UNAUTHORISED_REQUESTER
    await asyncio.sleep(QUIET_S)
    for agency in AGENCIES:
        assert subject not in {e.subject for e in world.exchange.deliveries[agency]}
