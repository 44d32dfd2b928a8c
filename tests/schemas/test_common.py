"""Shared types: the CCCD personal id, Vietnamese names and addresses."""

from __future__ import annotations

import unicodedata
from datetime import date

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.common import Address, PersonalId, PersonName, check_personal_id_matches

PERSONAL_ID = TypeAdapter(PersonalId)
PERSON_NAME = TypeAdapter(PersonName)

ADDRESS = {
    "street": "12 Lê Lợi",
    "commune_code": "26740",
    "commune_name": "Phường Bến Nghé",
    "province_code": "79",
    "province_name": "Thành phố Hồ Chí Minh",
}


@pytest.mark.parametrize("value", ["079190012345", "001190012345", "096190012345"])
def test_valid_personal_ids(value: str) -> None:
    """Twelve digits starting with a province code 001-096 are a personal id."""
    assert PERSONAL_ID.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    ["07919001234", "0791900123456", "07919001234a", " 79190012345", "079-190-012345", ""],
)
def test_personal_id_must_be_twelve_digits(value: str) -> None:
    """Anything but exactly twelve digits is refused."""
    with pytest.raises(ValidationError, match="pattern"):
        PERSONAL_ID.validate_python(value)


@pytest.mark.parametrize("value", ["000190012345", "097190012345", "999190012345"])
def test_personal_id_province_must_be_001_to_096(value: str) -> None:
    """A first group outside the province codes 001-096 is refused."""
    with pytest.raises(ValidationError, match="province code 001-096"):
        PERSONAL_ID.validate_python(value)


def test_personal_id_must_be_a_string() -> None:
    """A number is not accepted in place of the id text (leading zeros would be lost)."""
    with pytest.raises(ValidationError):
        PERSONAL_ID.validate_python(79190012345)


@pytest.mark.parametrize(
    "value",
    [
        "".join(chr(0x0660 + int(c)) for c in "079190012345"),
        "".join(chr(0xFF10 + int(c)) for c in "079190012345"),
    ],
    ids=["arabic-indic", "fullwidth"],
)
def test_personal_id_refuses_non_ascii_digits(value: str) -> None:
    """Digits of other scripts are not CCCD digits and are refused."""
    with pytest.raises(ValidationError):
        PERSONAL_ID.validate_python(value)


@pytest.mark.parametrize(
    ("personal_id", "born", "sex"),
    [
        ("079190012345", date(1990, 5, 17), "female"),  # 1 = female, 1900s; 90 = 1990
        ("079090012345", date(1990, 5, 17), "male"),  # 0 = male, 1900s
        ("079201012345", date(2001, 1, 1), "male"),  # 2 = male, 2000s
        ("079301012345", date(2001, 1, 1), "female"),  # 3 = female, 2000s
        ("079400012345", date(2100, 1, 1), "male"),  # 4 = male, 2100s
        ("079199012345", date(1999, 12, 31), "female"),
    ],
)
def test_century_sex_and_year_digits_match(personal_id: str, born: date, sex: str) -> None:
    """The fourth digit encodes sex and century and the next two the year of birth."""
    check_personal_id_matches(personal_id, born, sex)  # type: ignore[arg-type]


def test_sex_digit_mismatch() -> None:
    """An odd (female) digit with sex male is refused."""
    with pytest.raises(ValueError, match="sex digit"):
        check_personal_id_matches("079190012345", date(1990, 5, 17), "male")


@pytest.mark.parametrize("born", [date(2090, 5, 17), date(1890, 5, 17)])
def test_century_digit_mismatch(born: date) -> None:
    """A 1900s digit with a birth date in another century is refused."""
    with pytest.raises(ValueError, match="century digit"):
        check_personal_id_matches("079190012345", born, "female")


def test_birth_year_digits_mismatch() -> None:
    """Year digits '90' with a birth in 1991 are refused."""
    with pytest.raises(ValueError, match="birth-year digits"):
        check_personal_id_matches("079190012345", date(1991, 5, 17), "female")


@pytest.mark.parametrize(
    "name",
    [
        "Nguyễn Thị Minh Khai",
        "Trần Văn Đức",
        "Lê",
        "H'Hen Niê",
        "Phạm-Nguyễn Bảo Anh",
        "Ngô Đình Ủy",
    ],
)
def test_vietnamese_names_validate(name: str) -> None:
    """Names with real diacritics, apostrophes and hyphens are accepted unchanged."""
    assert PERSON_NAME.validate_python(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Nguyễn Văn 2",
        "Trần Văn Đức3",
        "Lê Văn \u0663",  # Arabic-Indic three
        "Nguyễn  Văn",  # two spaces
        " Nguyễn Văn",
        "Nguyễn Văn ",
        "Nguyễn_Văn",
        "Nguyễn.Văn",
        "",
    ],
)
def test_names_refuse_digits_and_odd_separators(name: str) -> None:
    """Digits, underscores, dots, double or edge spaces and empty names are refused."""
    with pytest.raises(ValidationError):
        PERSON_NAME.validate_python(name)


def test_name_longer_than_100_characters_is_refused() -> None:
    """A name of 101 letters is refused."""
    with pytest.raises(ValidationError, match="at most 100"):
        PERSON_NAME.validate_python("A" * 101)


def test_address_validates_and_normalises_to_nfc() -> None:
    """An address typed in NFD comes out in NFC."""
    address = Address.model_validate(
        {k: unicodedata.normalize("NFD", v) for k, v in ADDRESS.items()}
    )
    assert address.model_dump() == ADDRESS
    assert unicodedata.is_normalized("NFC", address.commune_name)


def test_address_street_is_optional() -> None:
    """An address without a street is valid."""
    assert Address.model_validate({**ADDRESS, "street": None}).street is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commune_code", "2674"),
        ("commune_code", "2674a"),
        ("province_code", "079"),
        ("province_name", ""),
    ],
)
def test_address_field_errors_name_the_field(field: str, value: str) -> None:
    """An invalid address part is reported under its own field name."""
    with pytest.raises(ValidationError) as error:
        Address.model_validate({**ADDRESS, field: value})
    assert [e["loc"] for e in error.value.errors()] == [(field,)]


def test_address_refuses_extra_fields() -> None:
    """An address with an unknown field (the abolished district level) is refused."""
    with pytest.raises(ValidationError) as error:
        Address.model_validate({**ADDRESS, "district": "Quận 1"})
    assert error.value.errors()[0]["type"] == "extra_forbidden"
    assert error.value.errors()[0]["loc"] == ("district",)
