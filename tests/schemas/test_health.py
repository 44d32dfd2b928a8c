"""Events of the Department of Health: births, deaths, BHYT cards, vaccinations."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from pydantic import ValidationError

from schemas.health import (
    BirthCertificateIssued,
    DeathCertificateIssued,
    HealthInsuranceCardIssued,
    VaccinationRecorded,
)
from tests.schemas import strategies
from tests.schemas.factories import THU_DAU_MOT, birth_data

CARD = {
    "personal_id": "079190012345",
    "card_number": "DN4790123456789",
    "change_kind": "issued",
    "valid_from": date(2026, 1, 1),
    "valid_to": date(2026, 12, 31),
    "primary_care_facility_code": "79024",
}
DEATH = {
    "personal_id": "079045000321",
    "full_name": "Lê Văn Tám",
    "date_of_death": date(2026, 10, 2),
    "place_of_death": THU_DAU_MOT,
    "facility_code": "79024",
    "certificate_number": "88/GBT",
    "issued_on": date(2026, 10, 2),
}


def test_birth_certificate_validates_with_the_child_as_subject() -> None:
    """A birth certificate of Trần Ngọc Bảo Anh is keyed by the child's id."""
    event = BirthCertificateIssued.model_validate(birth_data())
    assert event.subject_id() == "079326000123"
    assert event.mother_full_name == "Nguyễn Thị Minh Khai"


def test_birth_certificate_parents_are_optional() -> None:
    """A birth certificate without parents' ids or names validates."""
    data = birth_data()
    for key in ("mother_personal_id", "mother_full_name", "father_personal_id", "father_full_name"):
        del data[key]
    assert BirthCertificateIssued.model_validate(data).father_personal_id is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"sex": "male"}, "sex digit"),
        ({"date_of_birth": date(2025, 3, 14)}, "birth-year digits"),
        ({"issued_on": date(2026, 3, 13)}, "issued_on is before date_of_birth"),
        ({"mother_personal_id": "079326000123"}, "child's personal_id"),
        ({"father_personal_id": "079190012345"}, "are the same"),
    ],
)
def test_inconsistent_birth_certificates_are_refused(changes: dict[str, object], why: str) -> None:
    """Id digits against birth date and sex, dates, and parents' ids are cross-checked."""
    with pytest.raises(ValidationError, match=why):
        BirthCertificateIssued.model_validate(birth_data(**changes))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mother_personal_id", "079190"),
        ("father_full_name", "Trần Văn 2"),
        ("facility_code", "7902"),
        ("certificate_number", "số 12"),
    ],
)
def test_birth_certificate_field_errors_name_the_field(field: str, value: str) -> None:
    """An invalid part of a birth certificate is reported under its field."""
    with pytest.raises(ValidationError) as error:
        BirthCertificateIssued.model_validate(birth_data(**{field: value}))
    assert [e["loc"] for e in error.value.errors()] == [(field,)]


def test_death_certificate_validates() -> None:
    """A death in Phường Thủ Dầu Một certified the same day validates."""
    assert DeathCertificateIssued.model_validate(DEATH).place_of_death is not None


def test_death_certificate_before_death_is_refused() -> None:
    """A certificate dated before the death is refused."""
    with pytest.raises(ValidationError, match="issued_on is before date_of_death"):
        DeathCertificateIssued.model_validate({**DEATH, "issued_on": date(2026, 10, 1)})


def test_death_certificate_carries_no_cause() -> None:
    """The cause of death is not part of the exchange and is refused."""
    with pytest.raises(ValidationError) as error:
        DeathCertificateIssued.model_validate({**DEATH, "cause": "I21"})
    assert [e["type"] for e in error.value.errors()] == ["extra_forbidden"]


@pytest.mark.parametrize("kind", ["issued", "renewed", "reissued", "changed"])
def test_insurance_card_change_kinds(kind: str) -> None:
    """Each change kind of a BHYT card validates."""
    assert (
        HealthInsuranceCardIssued.model_validate({**CARD, "change_kind": kind}).change_kind == kind
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("card_number", "XX4790123456789"),
        ("card_number", "DN4790123456"),
        ("change_kind", "cancelled"),
        ("primary_care_facility_code", "ABCDE"),
    ],
)
def test_insurance_card_field_errors_name_the_field(field: str, value: str) -> None:
    """A bad card number, change kind or facility is reported under its field."""
    with pytest.raises(ValidationError) as error:
        HealthInsuranceCardIssued.model_validate({**CARD, field: value})
    assert [e["loc"] for e in error.value.errors()] == [(field,)]


def test_insurance_card_validity_must_not_end_before_it_starts() -> None:
    """A card valid to a date before it is valid from is refused."""
    with pytest.raises(ValidationError, match="valid_to is before valid_from"):
        HealthInsuranceCardIssued.model_validate({**CARD, "valid_to": date(2025, 12, 31)})


@given(strategies.bhyt_numbers)
def test_any_valid_card_number_round_trips(number: str) -> None:
    """A card event with any valid BHYT number survives a JSON round trip."""
    card = HealthInsuranceCardIssued.model_validate({**CARD, "card_number": number})
    assert HealthInsuranceCardIssued.model_validate_json(card.model_dump_json()) == card


def test_vaccination_is_unchanged() -> None:
    """The published vaccination type keeps its name and fields."""
    assert VaccinationRecorded.event_type == "vn.hcm.health.vaccination_recorded.v1"
    assert list(VaccinationRecorded.model_fields) == [
        "personal_id",
        "vaccine_code",
        "dose_number",
        "administered_on",
        "facility_code",
    ]
