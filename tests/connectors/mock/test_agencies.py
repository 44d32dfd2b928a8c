"""Each mock agency's reaction to each kind of delivery, over a fake client.

Deliveries are projected with the shipped policy's grants, so a connector is tested with exactly
the fields its agency would receive. Requests are projected with ``REQUEST_GRANTS``, the
``[[requests]]`` section of the policy.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from connectors.client import PublishedEvent, ReceivedEvent
from connectors.errors import RequestRefused, RequestTimedOut
from connectors.mock import people
from connectors.mock.education import EducationConnector
from connectors.mock.health import HealthConnector
from connectors.mock.land import LandConnector, parcel_key
from connectors.mock.people import Person
from connectors.mock.police import PoliceConnector
from gateway.core.envelope import subject_digest
from gateway.core.policy import Policy
from gateway.reasons import ReasonCode
from schemas.base import EventModel, RequestModel, ResponseModel
from schemas.common import Address
from schemas.education import StudentEnrolled
from schemas.health import BirthCertificateIssued, DeathCertificateIssued, HealthInsuranceCardIssued
from schemas.land import LandTransferRegistered
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentAddressChanged,
    ResidentDeceased,
    ResidentRegistered,
)
from schemas.registry import REGISTRY
from tests.conftest import make_resident

TODAY = date(2026, 11, 25)
MOMENT = datetime.combine(TODAY, time(3, 0), UTC)  # 10:00 in Ho Chi Minh City

# The [[requests]] section of gateway/data/policy.toml (test_lifeevents checks they agree):
# (request fields, response fields) per requester. The police answer every verification.
IDENTITY = frozenset({"personal_id", "full_name", "date_of_birth"})
IDENTITY_ANSWER = frozenset({"personal_id", "match", "full_name_matches", "date_of_birth_matches"})
RESIDENCE = frozenset({"personal_id", "claimed_address"})
RESIDENCE_ANSWER = frozenset({"personal_id", "match", "residence_kind"})
REQUEST_GRANTS: dict[str, dict[str, tuple[frozenset[str], frozenset[str]]]] = {
    IdentityVerificationRequested.event_type: {
        "land": (IDENTITY, IDENTITY_ANSWER),
        "education": (IDENTITY, IDENTITY_ANSWER),
    },
    ResidenceVerificationRequested.event_type: {"education": (RESIDENCE, RESIDENCE_ANSWER)},
}


def received(
    model: EventModel,
    fields: frozenset[str],
    *,
    purpose: str = "test",
    legal_basis: str = "test",
    moment: datetime = MOMENT,
    correlation_id: str | None = None,
) -> ReceivedEvent:
    """``model`` as a recipient of ``fields`` would receive it."""
    view = REGISTRY.projection(model.event_type, fields)
    values = model.model_dump(mode="json")
    extra: dict[str, Any] = {}
    if "correlation_id" in {f.name for f in dataclasses.fields(ReceivedEvent)}:
        extra["correlation_id"] = correlation_id
    return ReceivedEvent(
        id=str(uuid.uuid4()),
        type=model.event_type,
        source_agency=model.event_type.split(".")[2],
        subject=subject_digest(model.subject_id()),
        time=moment,
        purpose=purpose,
        legal_basis=legal_basis,
        data=view.model_validate({k: v for k, v in values.items() if k in fields}),
        fields=fields,
        **extra,
    )


def deliver(model: EventModel, recipient: str, policy: Policy) -> ReceivedEvent:
    """``model`` projected for ``recipient`` as the policy grants it (KeyError if it does not)."""
    route = policy.route_for(model.event_type)
    assert route is not None, model.event_type
    (grant,) = [g for g in route.recipients if g.agency == recipient]
    return received(model, grant.fields, purpose=grant.purpose, legal_basis=grant.legal_basis)


def deliver_request(request: RequestModel, requester: str) -> ReceivedEvent:
    """``request`` from ``requester`` as the police (the answerer) receive it."""
    fields, _ = REQUEST_GRANTS[request.event_type][requester]
    return received(request, fields, purpose=f"{requester}_verification")


def deliver_response(
    response: ResponseModel, requester: str, request: ReceivedEvent
) -> ReceivedEvent:
    """``response`` as ``requester`` receives it."""
    _, fields = REQUEST_GRANTS[response.request_type][requester]
    return received(response, fields, correlation_id=request.id)


Answerer = Callable[[RequestModel], Awaitable[ReceivedEvent]]


class FakeClient:
    """Records what a connector publishes, asks and answers; ``answer`` plays the other side."""

    def __init__(self, agency: str, answer: Answerer | None = None) -> None:
        self.agency = agency
        self.answer = answer
        self.fail: Exception | None = None
        self.published: list[EventModel] = []
        self.requested: list[RequestModel] = []
        self.responded: list[tuple[ReceivedEvent, ResponseModel]] = []
        self._ids = itertools.count()

    def _sent(self, model: EventModel) -> PublishedEvent:
        # As the real client does: the model must validate again before it is signed.
        type(model).model_validate(model.model_dump())
        return PublishedEvent(
            f"{self.agency}-{next(self._ids)}",
            model.event_type,
            subject_digest(model.subject_id()),
            MOMENT,
            b"",
        )

    async def publish(self, model: EventModel) -> PublishedEvent:
        self.published.append(model)
        return self._sent(model)

    async def request(
        self,
        model: RequestModel,
        *,
        timeout: float,  # noqa: ASYNC109 - the client's signature: the deadline travels with it
    ) -> ReceivedEvent:
        assert 0 < timeout <= 30
        self.requested.append(model)
        if self.fail is not None:
            raise self.fail
        assert self.answer is not None
        return await self.answer(model)

    async def respond(self, request: ReceivedEvent, model: ResponseModel) -> PublishedEvent:
        assert model.request_type == request.type
        self.responded.append((request, model))
        return self._sent(model)


def police_answers(police: PoliceConnector, requester: str) -> Answerer:
    """An answerer that asks ``police`` as the exchange would, projecting both ways."""

    async def answer(model: RequestModel) -> ReceivedEvent:
        delivery = deliver_request(model, requester)
        await police.handle(delivery)
        request, response = police.client.responded[-1]  # type: ignore[attr-defined]
        assert request is delivery
        return deliver_response(response, requester, delivery)

    return answer


def make(connector: type[Any], agency: str, seed: int = 0) -> Any:
    return connector(FakeClient(agency), random.Random(seed))


def published(connector: Any) -> list[EventModel]:
    return connector.client.published  # type: ignore[no-any-return]


def saigon(street: str | None = "12 Lê Lợi") -> Address:
    return Address(
        street=street,
        commune_code="26740",
        commune_name="Phường Sài Gòn",
        province_code="79",
        province_name="Thành phố Hồ Chí Minh",
    )


def newborn(**changes: Any) -> BirthCertificateIssued:
    fields: dict[str, Any] = {
        "personal_id": "079226000123",
        "full_name": "Trần Minh An",
        "date_of_birth": TODAY - timedelta(days=2),
        "sex": "male",
        "place_of_birth": people.address(random.Random(4)),
        "facility_code": "79035",
        "certificate_number": "0042/GCS",
        "issued_on": TODAY,
        "mother_personal_id": "079190012345",
        "mother_full_name": "Nguyễn Thị Minh Khai",
    }
    fields.update(changes)
    return BirthCertificateIssued.model_validate(fields)


# --- police ------------------------------------------------------------------------------------


async def police_with(*residents: ResidentRegistered) -> PoliceConnector:
    police: PoliceConnector = make(PoliceConnector, "police")
    for person in residents:
        await police.register_resident(person)
    police.client.published.clear()  # type: ignore[attr-defined]
    return police


async def test_police_registers_a_newborn_at_the_mothers_address(policy: Policy) -> None:
    """A birth certificate makes police register the child at the mother's permanent address."""
    mother = make_resident()
    police = await police_with(mother)
    reactions = await police.handle(deliver(newborn(), "police", policy))
    (child,) = published(police)
    assert len(reactions) == 1
    assert isinstance(child, ResidentRegistered)
    assert child.personal_id == "079226000123"
    assert child.permanent_address == mother.permanent_address
    assert child.registered_on == TODAY
    assert police.resident("079226000123") == child


async def test_police_registers_a_newborn_of_unknown_parents_at_the_place_of_birth(
    policy: Policy,
) -> None:
    """Without a registered parent, the child's address is the place of birth."""
    police = await police_with()
    birth = newborn()
    await police.handle(deliver(birth, "police", policy))
    (child,) = published(police)
    assert isinstance(child, ResidentRegistered)
    assert child.permanent_address == birth.place_of_birth


async def test_police_registers_a_child_once(policy: Policy) -> None:
    """The same birth delivered twice registers the child once."""
    police = await police_with()
    await police.handle(deliver(newborn(), "police", policy))
    assert await police.handle(deliver(newborn(), "police", policy)) == []
    assert len(published(police)) == 1


async def test_police_deregisters_the_dead_and_tells_once(policy: Policy) -> None:
    """A death certificate becomes one ResidentDeceased, and the resident leaves the register."""
    resident = make_resident()
    police = await police_with(resident)
    death = people.death_certificate(random.Random(1), Person.of(resident), TODAY)
    await police.handle(deliver(death, "police", policy))
    await police.handle(deliver(death, "police", policy))
    (deceased,) = published(police)
    assert isinstance(deceased, ResidentDeceased)
    assert deceased.date_of_death == death.date_of_death
    assert deceased.death_certificate_number == death.certificate_number
    assert police.resident(resident.personal_id) is None
    assert resident not in police.register


async def test_police_answers_identity_with_yes_or_no_per_field() -> None:
    """A matching identity is confirmed; a wrong date of birth is the only field said no."""
    resident = make_resident()
    police = await police_with(resident)
    right = IdentityVerificationRequested(
        personal_id=resident.personal_id,
        full_name="NGUYỄN THỊ MINH KHAI",
        date_of_birth=date(1990, 5, 17),
    )
    wrong_birth = right.model_copy(update={"date_of_birth": date(1990, 5, 18)})
    for asked in (right, wrong_birth):
        await police.handle(deliver_request(asked, "land"))
    answers = [answer for _, answer in police.client.responded]  # type: ignore[attr-defined]
    assert answers == [
        IdentityVerified(
            personal_id=resident.personal_id,
            match=True,
            full_name_matches=True,
            date_of_birth_matches=True,
        ),
        IdentityVerified(
            personal_id=resident.personal_id,
            match=False,
            full_name_matches=True,
            date_of_birth_matches=False,
        ),
    ]
    assert published(police) == []  # answers are responses, not events to route


async def test_police_answer_does_not_reveal_whether_an_id_exists(policy: Policy) -> None:
    """An unknown id, a deceased one and a known one with other details get the same answer."""
    known, dead = make_resident(), make_resident(personal_id="079190054321")
    police = await police_with(known, dead)
    death = people.death_certificate(random.Random(1), Person.of(dead), TODAY)
    await police.handle(deliver(death, "police", policy))
    answers = []
    for personal_id in (known.personal_id, "079190099999", dead.personal_id):
        asked = IdentityVerificationRequested(
            personal_id=personal_id, full_name="Lê Văn Tám", date_of_birth=date(1991, 1, 1)
        )
        await police.handle(deliver_request(asked, "land"))
        _, answer = police.client.responded[-1]  # type: ignore[attr-defined]
        answers.append(answer.model_dump(exclude={"personal_id"}))
    assert (
        answers
        == [{"match": False, "full_name_matches": False, "date_of_birth_matches": False}] * 3
    )
    assert set(IdentityVerified.model_fields) == set(IDENTITY_ANSWER)


async def test_police_answers_residence_without_saying_where() -> None:
    """A claimed address is confirmed with its kind; a wrong one says no and nothing else."""
    resident = make_resident()
    police = await police_with(resident)
    cases = [
        (resident.personal_id, saigon("12  lê lợi")),  # spacing and case do not matter
        (resident.personal_id, saigon(None)),  # the commune alone is what a catchment needs
        (resident.personal_id, saigon("14 Lê Lợi")),
        ("079190099999", saigon()),
    ]
    for personal_id, claimed in cases:
        asked = ResidenceVerificationRequested(personal_id=personal_id, claimed_address=claimed)
        await police.handle(deliver_request(asked, "education"))
    answers = [a.model_dump() for _, a in police.client.responded]  # type: ignore[attr-defined]
    assert [(a["match"], a["residence_kind"]) for a in answers] == [
        (True, "permanent"),
        (True, "permanent"),
        (False, None),
        (False, None),
    ]
    assert set(ResidenceVerified.model_fields) == set(RESIDENCE_ANSWER)


async def test_police_confirms_a_temporary_residence_after_a_move() -> None:
    """After a move the new address is confirmed under its kind; the old one for its kind."""
    resident = make_resident()
    police = await police_with(resident)
    police._rng = random.Random(0)
    await police.change_address(resident.personal_id, TODAY)
    (moved,) = published(police)
    assert isinstance(moved, ResidentAddressChanged)
    asked = ResidenceVerificationRequested(
        personal_id=resident.personal_id, claimed_address=moved.new_address
    )
    await police.handle(deliver_request(asked, "education"))
    _, answer = police.client.responded[-1]  # type: ignore[attr-defined]
    assert answer == ResidenceVerified(
        personal_id=resident.personal_id, match=True, residence_kind=moved.residence_kind
    )


async def test_police_notes_cards_and_dwellings(policy: Policy) -> None:
    """BHYT cards are kept for VNeID until terminated; land events count lawful dwellings."""
    police = await police_with()
    card = people.insurance_card(random.Random(0), "079190012345", TODAY, group="DN")
    await police.handle(deliver(card, "police", policy))
    assert police.vneid_cards == {"079190012345": card.card_number}
    await police.handle(deliver(people.card_terminated(card, TODAY), "police", policy))
    assert police.vneid_cards == {}
    rng = random.Random(0)
    owner, buyer = Person.of(make_resident()), Person.of(people.resident_aged(rng, TODAY, 30, 40))
    cert = people.land_certificate(rng, owner, TODAY)
    await police.handle(deliver(cert, "police", policy))
    await police.handle(deliver(people.land_transfer(rng, cert, buyer, TODAY), "police", policy))
    assert police.dwellings == {owner.personal_id: 0, buyer.personal_id: 1}
    assert published(police) == []


async def test_police_stream_registers_and_moves_known_residents() -> None:
    """publish_next registers new residents and moves registered ones, never unknown ids."""
    police: PoliceConnector = make(PoliceConnector, "police", seed=3)
    for _ in range(60):
        await police.publish_next(TODAY)
    events = published(police)
    registered = {e.personal_id for e in events if isinstance(e, ResidentRegistered)}
    moves = [e for e in events if isinstance(e, ResidentAddressChanged)]
    assert moves
    assert {m.personal_id for m in moves} <= registered
    assert len(police.register) == len(registered)


# --- health ------------------------------------------------------------------------------------


async def test_health_issues_a_child_card_on_a_childs_registration(policy: Policy) -> None:
    """Police registering a child under six makes health issue a TE card; an adult gets none."""
    health: HealthConnector = make(HealthConnector, "health")
    child = make_resident(
        personal_id="079226000123",
        full_name="Trần Minh An",
        date_of_birth=TODAY - timedelta(days=2),
        sex="male",
        registered_on=TODAY,
    )
    await health.handle(deliver(make_resident(), "health", policy))
    reactions = await health.handle(deliver(child, "health", policy))
    (card,) = published(health)
    assert len(reactions) == 1
    assert isinstance(card, HealthInsuranceCardIssued)
    assert card.card_number.startswith("TE179")
    assert card.valid_to == date(2032, 11, 22)
    assert set(health.residents) == {"079190012345", "079226000123"}


async def test_health_closes_the_card_of_the_deceased(policy: Policy) -> None:
    """resident_deceased closes the holder's card on the day of death; unknown holders: nothing."""
    health: HealthConnector = make(HealthConnector, "health")
    person = Person.of(make_resident())
    await health.issue_card(person, TODAY - timedelta(days=30))
    (card,) = published(health)
    died = TODAY - timedelta(days=1)
    deceased = ResidentDeceased(
        personal_id=person.personal_id,
        full_name=person.full_name,
        date_of_death=died,
        deregistered_on=TODAY,
    )
    await health.handle(deliver(deceased, "health", policy))
    unknown = deceased.model_copy(update={"personal_id": "079190099999"})
    assert await health.handle(deliver(unknown, "health", policy)) == []
    _, closed = published(health)
    assert isinstance(closed, HealthInsuranceCardIssued)
    assert closed.change_kind == "terminated"
    assert closed.card_number == card.card_number  # type: ignore[attr-defined]
    assert closed.valid_to == died
    assert person.personal_id not in health.cards
    assert health.closed_cards == 1


async def test_health_moves_an_enrolled_pupil_to_group_hs(policy: Policy) -> None:
    """An enrolment turns the pupil's card into an HS card with the same BHXH number."""
    health: HealthConnector = make(HealthConnector, "health")
    pupil = Person("079320000777", "Lê Thu Hà", date(2020, 3, 1), "female")
    await health.issue_card(pupil, TODAY)
    enrolled = StudentEnrolled(
        personal_id=pupil.personal_id,
        full_name=pupil.full_name,
        school_code="79760101",
        grade=1,
        school_year="2026-2027",
        start_date=TODAY,
    )
    await health.handle(deliver(enrolled, "health", policy))
    first, changed = published(health)
    assert isinstance(changed, HealthInsuranceCardIssued)
    assert changed.card_number[:3] == "HS4"
    assert changed.card_number[5:] == first.card_number[5:]  # type: ignore[attr-defined]
    assert changed.change_kind == "changed"


async def test_health_moves_a_registered_resident(policy: Policy) -> None:
    """A permanent move updates the address health holds; it publishes nothing."""
    health: HealthConnector = make(HealthConnector, "health")
    resident = make_resident()
    await health.handle(deliver(resident, "health", policy))
    moved = people.address_change(random.Random(2), resident, TODAY)
    moved = moved.model_copy(update={"residence_kind": "permanent"})
    assert await health.handle(deliver(moved, "health", policy)) == []
    assert health.residents[resident.personal_id].address == moved.new_address


async def test_health_stream_publishes_births_deaths_cards_and_vaccinations(
    policy: Policy,
) -> None:
    """publish_next covers every health type, with parents and deaths among known residents."""
    health: HealthConnector = make(HealthConnector, "health", seed=2)
    rng = random.Random(8)
    for _ in range(20):
        await health.handle(deliver(people.resident_aged(rng, TODAY, 18, 80), "health", policy))
    for _ in range(80):
        await health.publish_next(TODAY)
    kinds = {type(e) for e in published(health)}
    assert {"BirthCertificateIssued", "DeathCertificateIssued", "HealthInsuranceCardIssued"} <= {
        k.__name__ for k in kinds
    }
    deaths = [e for e in published(health) if isinstance(e, DeathCertificateIssued)]
    assert {d.personal_id for d in deaths} <= set(health.residents) | {
        d.personal_id for d in deaths
    }
    births = [e for e in published(health) if isinstance(e, BirthCertificateIssued)]
    assert all(b.mother_personal_id is not None for b in births)


# --- education ---------------------------------------------------------------------------------


async def test_education_notes_children_for_planning(policy: Policy) -> None:
    """Births and child registrations are noted per start year and commune; adults are not."""
    education: EducationConnector = make(EducationConnector, "education")
    birth = newborn()
    await education.handle(deliver(birth, "education", policy))
    assert education.planning() == {(2032, None): 1}
    child = make_resident(
        personal_id=birth.personal_id,
        full_name=birth.full_name,
        date_of_birth=birth.date_of_birth,
        sex="male",
        registered_on=TODAY,
    )
    await education.handle(deliver(child, "education", policy))
    await education.handle(deliver(make_resident(), "education", policy))
    assert education.planning() == {(2032, "26740"): 1}
    assert published(education) == []


async def admitting(police: PoliceConnector) -> EducationConnector:
    education: EducationConnector = make(EducationConnector, "education")
    education.client.answer = police_answers(police, "education")  # type: ignore[attr-defined]
    return education


async def test_education_enrols_after_police_confirm_the_residence() -> None:
    """An admission asks police about the declared address and enrols on a yes."""
    pupil = make_resident(
        personal_id="079320000777", date_of_birth=date(2020, 3, 1), registered_on=date(2020, 3, 2)
    )
    police = await police_with(pupil)
    education = await admitting(police)
    admission = await education.admit(Person.of(pupil), date(2026, 6, 1))
    assert admission.outcome == "enrolled"
    (asked,) = education.client.requested  # type: ignore[attr-defined]
    assert asked == ResidenceVerificationRequested(
        personal_id=pupil.personal_id, claimed_address=pupil.permanent_address
    )
    (enrolled,) = published(education)
    assert isinstance(enrolled, StudentEnrolled)
    assert (enrolled.grade, enrolled.school_year) == (1, "2026-2027")
    assert education.pupils == {pupil.personal_id: "2026-2027"}


async def test_education_does_not_enrol_on_a_no() -> None:
    """A declared address the police do not hold gets no enrolment."""
    pupil = make_resident(
        personal_id="079320000777", date_of_birth=date(2020, 3, 1), registered_on=date(2020, 3, 2)
    )
    police = await police_with(pupil)
    education = await admitting(police)
    wrong = saigon("99 Pasteur")
    admission = await education.admit(Person.of(pupil), date(2026, 6, 1), claimed=wrong)
    assert admission == type(admission)("residence_not_verified")
    assert published(education) == []


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (RequestTimedOut(ReasonCode.NO_RECIPIENTS, "no answer"), "no_answer"),
        (RequestRefused(ReasonCode.NO_RECIPIENTS, "not entitled"), "refused"),
    ],
)
async def test_education_does_not_enrol_without_an_answer(error: Exception, outcome: str) -> None:
    """A request that times out or is refused enrols nobody."""
    education: EducationConnector = make(EducationConnector, "education")
    education.client.fail = error  # type: ignore[attr-defined]
    pupil = Person("079320000777", "Lê Thu Hà", date(2020, 3, 1), "female", saigon())
    assert (await education.admit(pupil, date(2026, 6, 1))).outcome == outcome
    assert published(education) == []


async def test_education_stream_admits_known_children_and_issues_diplomas(
    policy: Policy,
) -> None:
    """publish_next admits children it knows of entry-grade age, else issues diplomas."""
    rng = random.Random(6)
    children = [people.resident_aged(rng, date(2026, 6, 1), 5, 6) for _ in range(6)]
    police = await police_with(*children)
    education = await admitting(police)
    for child in children:
        await education.handle(deliver(child, "education", policy))
    for _ in range(30):
        await education.publish_next(date(2026, 6, 1))
    kinds = {type(e).__name__ for e in published(education)}
    assert kinds == {"StudentEnrolled", "DiplomaIssued"}
    assert education.outcomes["enrolled"] >= 1


# --- land --------------------------------------------------------------------------------------


async def land_with_parcel(police: PoliceConnector, owner: Person) -> LandConnector:
    land: LandConnector = make(LandConnector, "land")
    land.client.answer = police_answers(police, "land")  # type: ignore[attr-defined]
    await land.issue_certificate(owner, TODAY)
    return land


async def test_land_transfers_after_police_confirm_the_transferee() -> None:
    """A transfer asks police about the transferee's declared identity and registers on a yes."""
    owner, buyer = (
        make_resident(),
        make_resident(
            personal_id="079085000321",
            full_name="Lê Văn Tám",
            date_of_birth=date(1985, 2, 3),
            sex="male",
        ),
    )
    police = await police_with(owner, buyer)
    land = await land_with_parcel(police, Person.of(owner))
    (key,) = land.holdings
    result = await land.transfer(key, Person.of(buyer), TODAY)
    assert result.outcome == "transferred"
    (asked,) = land.client.requested  # type: ignore[attr-defined]
    assert asked == IdentityVerificationRequested(
        personal_id=buyer.personal_id, full_name=buyer.full_name, date_of_birth=buyer.date_of_birth
    )
    _, transfer = published(land)
    assert isinstance(transfer, LandTransferRegistered)
    assert (transfer.personal_id, transfer.transferor_personal_id) == (
        buyer.personal_id,
        owner.personal_id,
    )
    assert land.holdings[key].personal_id == buyer.personal_id
    assert parcel_key(land.holdings[key]) == key


async def test_land_refuses_a_transfer_to_an_unverified_identity() -> None:
    """A transferee whose declared date of birth differs from the register is refused."""
    owner = make_resident()
    police = await police_with(owner)
    land = await land_with_parcel(police, Person.of(owner))
    (key,) = land.holdings
    impostor = Person("079085000321", "Lê Văn Tám", date(1985, 2, 3), "male")
    assert (await land.transfer(key, impostor, TODAY)).outcome == "identity_not_verified"
    assert len(published(land)) == 1  # the certificate only
    assert land.holdings[key].personal_id == owner.personal_id


async def test_land_flags_the_parcels_of_a_deceased_holder(
    policy: Policy, caplog: pytest.LogCaptureFixture
) -> None:
    """resident_deceased flags the holder's parcels; only inheritance may then transfer them."""
    owner = make_resident()
    police = await police_with(owner)
    land = await land_with_parcel(police, Person.of(owner))
    deceased = ResidentDeceased(
        personal_id=owner.personal_id,
        full_name=owner.full_name,
        date_of_death=TODAY,
        deregistered_on=TODAY,
    )
    delivery = deliver(deceased, "land", policy)
    assert delivery.fields == {"personal_id", "date_of_death"}
    with caplog.at_level("INFO", logger="xgw.mock.land"):
        assert await land.handle(delivery) == []
    assert land.flagged == list(land.holdings)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "parcels_flagged=1" in line
    assert owner.personal_id not in line
    assert owner.full_name not in line
    (key,) = land.holdings
    heir = Person.of(people.resident_aged(random.Random(1), TODAY, 30, 40))
    assert (await land.transfer(key, heir, TODAY, "sale")).outcome == "holder_deceased"
    assert land.client.requested == []  # type: ignore[attr-defined]


async def test_land_stream_issues_certificates_and_attempts_transfers() -> None:
    """publish_next issues certificates and tries transfers (refused for unknown people)."""
    police = await police_with()
    land: LandConnector = make(LandConnector, "land", seed=4)
    land.client.answer = police_answers(police, "land")  # type: ignore[attr-defined]
    for _ in range(40):
        await land.publish_next(TODAY)
    assert len(land.holdings) >= 20
    assert land.outcomes["identity_not_verified"] >= 1
    assert all(e.event_type.startswith("vn.hcm.land.") for e in published(land))
