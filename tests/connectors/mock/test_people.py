"""The fake data of the mock agencies: valid for the schemas, realistic, and seeded."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from connectors.mock import people
from connectors.mock.people import Person
from schemas.base import EventModel
from schemas.common import BHYT_GROUP_CODES
from schemas.registry import REGISTRY

TODAY = date(2026, 11, 25)
SEEDS = range(40)


def _person(rng: random.Random, youngest: int = 0, oldest: int = 90) -> Person:
    return Person.of(people.resident_aged(rng, TODAY, youngest, oldest))


GENERATORS: dict[str, Callable[[random.Random], EventModel | None]] = {
    "resident": lambda rng: people.resident(rng, TODAY),
    "resident_aged": lambda rng: people.resident_aged(rng, TODAY, 30, 31),
    "address_change": lambda rng: people.address_change(rng, people.resident(rng, TODAY), TODAY),
    "vaccination": lambda rng: people.vaccination(rng, people.resident(rng, TODAY), TODAY),
    "vaccination_of": lambda rng: people.vaccination_of(rng, _person(rng).personal_id, TODAY),
    "birth_with_parents": lambda rng: people.birth_certificate(
        rng, TODAY, mother=_person(rng, 18, 45), father=_person(rng, 20, 60)
    ),
    "birth_without_parents": lambda rng: people.birth_certificate(rng, TODAY),
    "death": lambda rng: people.death_certificate(rng, _person(rng), TODAY),
    "card": lambda rng: people.insurance_card(
        rng, _person(rng, 6).personal_id, TODAY, group=people.bhyt_group(rng, 30)
    ),
    "child_card": lambda rng: people.insurance_card(
        rng, "079226000001", TODAY, group="TE", date_of_birth=date(2026, 11, 20)
    ),
    "enrolment": lambda rng: people.enrolment(rng, _person(rng, 5, 17), TODAY),
    "diploma": lambda rng: people.diploma(rng, _person(rng, 14, 19), TODAY),
    "land_certificate": lambda rng: people.land_certificate(rng, _person(rng, 18), TODAY),
    "land_transfer": lambda rng: people.land_transfer(
        rng,
        people.land_certificate(rng, _person(rng, 18), TODAY),
        _person(rng, 18),
        TODAY,
        rng.choice(["sale", "gift", "inheritance", "exchange"]),
    ),
}


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_every_generator_produces_records_that_validate(name: str) -> None:
    """Each generator's records survive a JSON round trip through their registered model."""
    for seed in SEEDS:
        made = GENERATORS[name](random.Random(seed))
        if made is None:  # an enrolment of a child not of school age
            continue
        model = REGISTRY.model_for(made.event_type)
        assert model is type(made)
        assert model.model_validate_json(made.model_dump_json()) == made


def test_every_published_event_type_has_a_generator() -> None:
    """The fake data covers every type an agency publishes on its own (not the answers)."""
    made = {
        type(m).event_type
        for make in GENERATORS.values()
        for seed in range(5)
        if (m := make(random.Random(seed))) is not None
    }
    answers = {
        "vn.hcm.police.identity_verification_requested.v1",
        "vn.hcm.police.identity_verified.v1",
        "vn.hcm.police.residence_verification_requested.v1",
        "vn.hcm.police.residence_verified.v1",
        "vn.hcm.police.resident_deceased.v1",  # built by police from a death certificate
    }
    assert set(REGISTRY.types()) - answers == made


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_the_same_seed_gives_the_same_records(name: str) -> None:
    """A seed replays the same world."""
    assert GENERATORS[name](random.Random(3)) == GENERATORS[name](random.Random(3))


def test_birth_certificate_names_the_parents_and_the_family_name() -> None:
    """A child takes the father's family name; both parents' ids and names are on it."""
    rng = random.Random(1)
    mother, father = _person(rng, 18, 45), _person(rng, 20, 60)
    birth = people.birth_certificate(rng, TODAY, mother=mother, father=father)
    assert birth.mother_personal_id == mother.personal_id
    assert birth.father_full_name == father.full_name
    assert birth.full_name.split()[0] == father.full_name.split()[0]
    assert TODAY - timedelta(days=3) <= birth.date_of_birth <= birth.issued_on == TODAY
    assert birth.personal_id[:3] == "079"


@pytest.mark.parametrize(
    ("age", "groups"),
    [(2, {"TE"}), (10, {"HS"}), (19, {"SV", "DN"}), (40, None), (70, {"HT", "GD"})],
)
def test_bhyt_group_follows_age(age: int, groups: set[str] | None) -> None:
    """Children are TE, pupils HS, retirees HT or GD; every group is a Decision 1351 code."""
    drawn = {people.bhyt_group(random.Random(seed), age) for seed in SEEDS}
    assert drawn <= BHYT_GROUP_CODES
    if groups is not None:
        assert drawn <= groups


def test_bhyt_number_layout() -> None:
    """Group, benefit level, province 79 and a 10-digit BHXH number starting with 79."""
    number = people.bhyt_number("HS", people.social_insurance_number(random.Random(2)))
    assert len(number) == 15
    assert number[:2] == "HS"
    assert number[2] == "4"
    assert number[3:5] == "79"
    assert number[5:7] == "79"


def test_child_card_ends_the_day_before_the_sixth_birthday() -> None:
    """A TE card covers a child until the day before they turn six."""
    card = people.insurance_card(
        random.Random(0), "079226000001", TODAY, group="TE", date_of_birth=date(2026, 11, 20)
    )
    assert card.valid_to == date(2032, 11, 19)
    with pytest.raises(ValueError, match="date_of_birth"):
        people.insurance_card(random.Random(0), "079226000001", TODAY, group="TE")


def test_terminated_card_keeps_the_number_and_ends_on_the_day_of_death() -> None:
    """Closing a card keeps its number and facility; cover ends on the last day given."""
    card = people.insurance_card(random.Random(0), "079190012345", TODAY, group="DN")
    closed = people.card_terminated(card, TODAY - timedelta(days=1))
    assert closed.change_kind == "terminated"
    assert closed.card_number == card.card_number
    assert closed.valid_from <= closed.valid_to == TODAY - timedelta(days=1)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("today", "year", "start"),
    [
        (date(2026, 6, 1), "2026-2027", date(2026, 9, 5)),
        (date(2026, 11, 25), "2026-2027", date(2026, 11, 25)),
    ],
)
def test_school_year_of_an_admission(today: date, year: str, start: date) -> None:
    """Before opening day an admission is for the coming year; after it, it starts today."""
    assert people.school_year(today) == (year, start)


def test_grade_one_at_six() -> None:
    """A child born in 2020 starts grade 1 in 2026-2027, grade 6 in 2031-2032."""
    assert people.grade_in(date(2020, 12, 31), "2026-2027") == 1
    assert people.grade_in(date(2020, 1, 1), "2031-2032") == 6


def test_enrolment_prefers_a_school_of_the_pupils_commune() -> None:
    """An enrolment picks a school teaching the grade, in the pupil's commune when one is."""
    rng = random.Random(5)
    child = Person.of(people.resident_aged(rng, date(2026, 6, 1), 6, 6))
    home = people.address(rng).model_copy(update={"commune_code": "26740"})
    child = Person(child.personal_id, child.full_name, date(2020, 3, 1), child.sex, home)
    enrolled = people.enrolment(rng, child, date(2026, 6, 1))
    assert enrolled is not None
    assert enrolled.grade == 1
    school = next(s for s in people.SCHOOLS if s.code == enrolled.school_code)
    assert school.commune_code == "26740"
    assert school.first_grade <= 1 <= school.last_grade


def test_no_enrolment_outside_school_age() -> None:
    """A toddler and an adult are not enrolled."""
    rng = random.Random(0)
    assert people.enrolment(rng, _person(rng, 1, 2), TODAY) is None
    assert people.enrolment(rng, _person(rng, 30, 40), TODAY) is None


def test_land_certificates_fit_the_commune() -> None:
    """Ward plots are urban residential (ODT); communes (xã) hold rural or crop land."""
    rng = random.Random(9)
    for _ in range(100):
        cert = people.land_certificate(rng, _person(rng, 18), TODAY)
        rural = dict(people.COMMUNES)[cert.parcel.commune_code].startswith("Xã")
        assert (cert.use_purpose_code == "ODT") != rural
        assert round(cert.area_m2, 1) == cert.area_m2


def test_names_have_diacritics_and_ids_are_distinct() -> None:
    """Names are Vietnamese with diacritics; 500 draws give 500 distinct ids."""
    rng = random.Random(11)
    drawn = [people.resident_aged(rng, TODAY, 0, 90) for _ in range(500)]
    assert any(not r.full_name.isascii() for r in drawn)
    assert len({r.personal_id for r in drawn}) == 500


def test_age_on_counts_whole_years() -> None:
    """Age changes on the birthday, not before."""
    person = Person("079190012345", "Nguyễn Văn An", date(1990, 5, 17))
    assert person.age_on(date(2026, 5, 16)) == 35
    assert person.age_on(date(2026, 5, 17)) == 36
