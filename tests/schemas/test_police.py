"""Population events of the city police."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from pydantic import ValidationError

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
from tests.schemas.factories import BEN_NGHE_2024, BEN_THANH, SAI_GON, make_resident

NEW_ADDRESS = BEN_THANH


def _errors(**changes: object) -> list[tuple[tuple[str | int, ...], str]]:
    """The (location, message) of each error of a registration with ``changes``."""
    with pytest.raises(ValidationError) as error:
        make_resident(**changes)
    return [(e["loc"], e["msg"]) for e in error.value.errors()]


def test_resident_fixture_is_valid(resident: ResidentRegistered) -> None:
    """The shared fixture, a woman born in 1990 with id 079190012345, validates."""
    assert resident.personal_id == "079190012345"
    assert resident.sex == "female"
    assert resident.date_of_birth.year == 1990
    assert resident.nationality == "VN"
    assert resident.subject_id() == "079190012345"
    assert resident.event_type == "vn.hcm.police.resident_registered.v1"


def test_man_with_even_digit_validates() -> None:
    """Trần Văn Đức, a man born in 1985 (digit 0, year 85), validates."""
    resident = make_resident(
        "Trần Văn Đức", personal_id="079085001234", sex="male", date_of_birth=date(1985, 2, 3)
    )
    assert resident.full_name == "Trần Văn Đức"


def test_nfd_name_comes_out_nfc() -> None:
    """A name typed with combining marks is stored in its precomposed NFC spelling."""
    nfd = unicodedata.normalize("NFD", "Nguyễn Thị Minh Khai")
    assert nfd != "Nguyễn Thị Minh Khai"
    resident = make_resident(nfd)
    assert resident.full_name == "Nguyễn Thị Minh Khai"
    assert resident.permanent_address.commune_name == "Phường Sài Gòn"


def test_man_with_woman_digit_is_refused() -> None:
    """Sex male with the female digit 1 of 079190012345 is refused."""
    [(loc, msg)] = _errors(sex="male")
    assert loc == ()
    assert "personal_id sex digit does not match sex" in msg


def test_birth_year_must_match_id() -> None:
    """A birth in 1991 contradicts the year digits '90' of the id."""
    [(_, msg)] = _errors(date_of_birth=date(1991, 5, 17))
    assert "birth-year digits" in msg


def test_birth_century_must_match_id() -> None:
    """A birth in 2090 contradicts the 1900s digit of the id."""
    [(_, msg)] = _errors(date_of_birth=date(2090, 5, 17), registered_on=date(2091, 1, 1))
    assert "century digit" in msg


def test_registration_before_birth_is_refused() -> None:
    """A registration dated before the birth is refused."""
    [(_, msg)] = _errors(registered_on=date(1989, 1, 1))
    assert "registered_on is before date_of_birth" in msg


@pytest.mark.parametrize("name", ["Nguyễn Văn 2", "Nguyễn Thị Minh Khai 3", "R2D2"])
def test_digits_in_names_are_refused(name: str) -> None:
    """A name holding digits is refused, and the error names full_name."""
    [(loc, _)] = _errors(full_name=name)
    assert loc == ("full_name",)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("personal_id", "07919001234"),
        ("personal_id", "099190012345"),
        ("sex", "f"),
        ("date_of_birth", "17/05/1990"),
        ("nationality", "vn"),
        ("nationality", "VNM"),
    ],
)
def test_field_errors_name_the_field(field: str, value: str) -> None:
    """An invalid value is reported under the field that holds it."""
    [(loc, _)] = _errors(**{field: value})
    assert loc == (field,)


def test_nested_address_error_names_the_path() -> None:
    """An invalid commune code inside the address is reported with its full path."""
    address = {**NEW_ADDRESS, "commune_code": "ABCDE"}
    [(loc, _)] = _errors(permanent_address=address)
    assert loc == ("permanent_address", "commune_code")


def test_extra_fields_are_refused() -> None:
    """A field the schema does not define is refused, not ignored."""
    with pytest.raises(ValidationError) as error:
        make_resident(religion="none")
    assert [(e["loc"], e["type"]) for e in error.value.errors()] == [
        (("religion",), "extra_forbidden")
    ]


def test_missing_field_is_named() -> None:
    """A registration without a date of birth is refused, naming date_of_birth."""
    data = make_resident().model_dump()
    del data["date_of_birth"]
    with pytest.raises(ValidationError) as error:
        ResidentRegistered.model_validate(data)
    assert [e["loc"] for e in error.value.errors()] == [("date_of_birth",)]


def test_registration_survives_json_round_trip(resident: ResidentRegistered) -> None:
    """A registration dumped as JSON validates back to an equal model."""
    assert ResidentRegistered.model_validate_json(resident.model_dump_json()) == resident


def test_events_are_frozen(resident: ResidentRegistered) -> None:
    """A validated event cannot be changed in place."""
    with pytest.raises(ValidationError):
        resident.full_name = "Trần Văn Đức"  # type: ignore[misc]


def test_address_change_validates_and_normalises() -> None:
    """An address change with an NFD address validates and comes out in NFC."""
    event = ResidentAddressChanged.model_validate(
        {
            "personal_id": "079190012345",
            "full_name": "Nguyễn Thị Minh Khai",
            "residence_kind": "temporary",
            "new_address": {k: unicodedata.normalize("NFD", v) for k, v in NEW_ADDRESS.items()},
            "effective_on": date(2026, 12, 1),
        }
    )
    assert event.new_address.commune_name == "Phường Bến Thành"
    assert event.previous_address is None
    assert event.subject_id() == "079190012345"


def test_address_change_refuses_unknown_residence_kind() -> None:
    """Only permanent and temporary residence are known."""
    with pytest.raises(ValidationError) as error:
        ResidentAddressChanged.model_validate(
            {
                "personal_id": "079190012345",
                "full_name": "Nguyễn Thị Minh Khai",
                "residence_kind": "holiday",
                "new_address": NEW_ADDRESS,
                "effective_on": date(2026, 12, 1),
            }
        )
    assert [e["loc"] for e in error.value.errors()] == [("residence_kind",)]


def test_address_change_may_name_a_pre_2025_previous_address() -> None:
    """A move from Phường Bến Nghé, Quận 1 (pre-2025) to Phường Bến Thành validates."""
    event = ResidentAddressChanged.model_validate(
        {
            "personal_id": "079190012345",
            "full_name": "Nguyễn Thị Minh Khai",
            "residence_kind": "permanent",
            "previous_address": BEN_NGHE_2024,
            "new_address": BEN_THANH,
            "effective_on": date(2026, 12, 1),
        }
    )
    assert event.previous_address is not None
    assert event.previous_address.is_pre_2025


DECEASED = {
    "personal_id": "079045000321",
    "full_name": "Lê Văn Tám",
    "date_of_death": date(2026, 10, 2),
    "deregistered_on": date(2026, 10, 9),
    "death_certificate_number": "88/GBT",
}


def test_resident_deceased_validates() -> None:
    """A death recorded a week before deregistration validates, keyed by the deceased's id."""
    event = ResidentDeceased.model_validate(DECEASED)
    assert event.subject_id() == "079045000321"
    assert event.event_type == "vn.hcm.police.resident_deceased.v1"


def test_deregistration_before_death_is_refused() -> None:
    """A deregistration dated before the death is refused."""
    with pytest.raises(ValidationError, match="deregistered_on is before date_of_death"):
        ResidentDeceased.model_validate({**DECEASED, "deregistered_on": date(2026, 10, 1)})


def test_identity_request_and_response_are_paired() -> None:
    """The identity request names its response type and the response names the request."""
    assert IdentityVerificationRequested.response_type == IdentityVerified.event_type
    assert IdentityVerified.request_type == IdentityVerificationRequested.event_type
    assert IdentityVerificationRequested.event_type.startswith("vn.hcm.police.")
    assert REGISTRY.model_for(IdentityVerified.event_type) is IdentityVerified


def test_identity_request_validates() -> None:
    """A land office asking about Nguyễn Thị Minh Khai born 17 May 1990 is a valid request."""
    request = IdentityVerificationRequested.model_validate(
        {
            "personal_id": "079190012345",
            "full_name": "Nguyễn Thị Minh Khai",
            "date_of_birth": "1990-05-17",
        }
    )
    assert request.subject_id() == "079190012345"


@pytest.mark.parametrize(
    ("name", "born", "match"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_identity_answer_is_yes_or_no_per_field(name: bool, born: bool, match: bool) -> None:
    """The answer holds one boolean per field and an overall match that is their conjunction."""
    answer = IdentityVerified(
        personal_id="079190012345",
        match=match,
        full_name_matches=name,
        date_of_birth_matches=born,
    )
    assert set(answer.model_dump()) == {
        "personal_id",
        "match",
        "full_name_matches",
        "date_of_birth_matches",
    }


def test_identity_answer_with_inconsistent_match_is_refused() -> None:
    """A match claimed while the date of birth does not match is refused."""
    with pytest.raises(ValidationError, match="match must be true exactly when"):
        IdentityVerified(
            personal_id="079190012345",
            match=True,
            full_name_matches=True,
            date_of_birth_matches=False,
        )


def test_identity_answer_refuses_register_data() -> None:
    """An answer cannot carry more than yes or no: a returned name is an unknown field."""
    with pytest.raises(ValidationError) as error:
        IdentityVerified.model_validate(
            {
                "personal_id": "079190012345",
                "match": False,
                "full_name_matches": False,
                "date_of_birth_matches": True,
                "full_name": "Nguyễn Thị Minh Khai",
            }
        )
    assert [e["type"] for e in error.value.errors()] == ["extra_forbidden"]


def test_identity_answer_refuses_text_for_booleans() -> None:
    """'maybe' is not an answer to a field."""
    with pytest.raises(ValidationError) as error:
        IdentityVerified.model_validate(
            {
                "personal_id": "079190012345",
                "match": "maybe",
                "full_name_matches": True,
                "date_of_birth_matches": True,
            }
        )
    assert [e["loc"] for e in error.value.errors()] == [("match",)]


def test_residence_request_and_answers_validate() -> None:
    """Education asks about an address in Phường Sài Gòn; a match names the residence kind."""
    request = ResidenceVerificationRequested.model_validate(
        {"personal_id": "079190012345", "claimed_address": SAI_GON}
    )
    assert request.response_type == ResidenceVerified.event_type
    assert ResidenceVerified.request_type == request.event_type
    yes = ResidenceVerified(personal_id="079190012345", match=True, residence_kind="temporary")
    no = ResidenceVerified(personal_id="079190012345", match=False)
    assert (yes.residence_kind, no.residence_kind) == ("temporary", None)
    assert no.model_dump(mode="json") == {
        "personal_id": "079190012345",
        "match": False,
        "residence_kind": None,
    }


@pytest.mark.parametrize(
    ("match", "kind"), [(True, None), (False, "permanent")], ids=["yes-no-kind", "no-with-kind"]
)
def test_residence_kind_only_with_a_match(match: bool, kind: str | None) -> None:
    """A match without a residence kind, or a mismatch with one, is refused."""
    with pytest.raises(ValidationError, match="residence_kind is given exactly when match"):
        ResidenceVerified.model_validate(
            {"personal_id": "079190012345", "match": match, "residence_kind": kind}
        )


def test_residence_request_refuses_an_abolished_ward() -> None:
    """A claimed address in the abolished Phường Bến Nghé without its district is refused."""
    with pytest.raises(ValidationError) as error:
        ResidenceVerificationRequested.model_validate(
            {
                "personal_id": "079190012345",
                "claimed_address": {**SAI_GON, "commune_name": "Phường Bến Nghé"},
            }
        )
    assert [e["loc"] for e in error.value.errors()] == [("claimed_address", "commune_name")]
