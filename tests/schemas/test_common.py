"""Shared types: the CCCD personal id, Vietnamese names, addresses, BHYT and land identifiers."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.base import describe_errors
from schemas.common import (
    Address,
    HealthInsuranceNumber,
    LandCertificateSerial,
    Parcel,
    PersonalId,
    PersonName,
    check_personal_id_matches,
)
from schemas.police import ResidenceVerificationRequested
from tests.schemas import strategies
from tests.schemas.factories import BEN_NGHE_2024, BEN_THANH, PARCEL, SAI_GON, THU_DAU_MOT

PERSONAL_ID = TypeAdapter(PersonalId)
PERSON_NAME = TypeAdapter(PersonName)
BHYT = TypeAdapter(HealthInsuranceNumber)
SERIAL = TypeAdapter(LandCertificateSerial)

ADDRESS = SAI_GON


def _only_error(validator: TypeAdapter[Any] | type[BaseModel], value: object) -> tuple[Any, str]:
    """The location and message of the single error ``value`` raises."""
    validate = (
        validator.validate_python
        if isinstance(validator, TypeAdapter)
        else validator.model_validate
    )
    with pytest.raises(ValidationError) as error:
        validate(value)
    [only] = error.value.errors()
    return only["loc"], only["msg"]


@pytest.mark.parametrize(
    "value",
    ["079190012345", "001190012345", "096190012345", "074190012345", "077190012345"],
)
def test_valid_personal_ids(value: str) -> None:
    """Twelve digits starting with one of the 63 CCCD province codes are a personal id."""
    assert PERSONAL_ID.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    ["07919001234", "0791900123456", "07919001234a", " 79190012345", "079-190-012345", ""],
)
def test_personal_id_must_be_twelve_digits(value: str) -> None:
    """Anything but exactly twelve digits is refused."""
    with pytest.raises(ValidationError, match="pattern"):
        PERSONAL_ID.validate_python(value)


@pytest.mark.parametrize(
    "value",
    ["000190012345", "097190012345", "999190012345", "003190012345", "050190012345"],
)
def test_personal_id_province_must_be_a_cccd_province_code(value: str) -> None:
    """A first group that is no CCCD province code, even inside 001-096 (003, 050), is refused.

    The rule used to be the range 001-096, which let through 33 numbers no province has.
    """
    with pytest.raises(ValidationError, match="CCCD province code"):
        PERSONAL_ID.validate_python(value)


@pytest.mark.parametrize("code", strategies.UNUSED_PROVINCE_CODES)
def test_every_unused_province_code_is_refused(code: str) -> None:
    """Each of the 37 two-digit numbers that no province has is refused as a CCCD prefix."""
    loc, msg = _only_error(PERSONAL_ID, f"0{code}190012345")
    assert loc == ()
    assert "CCCD province code" in msg


@given(strategies.personal_ids())
def test_generated_personal_ids_validate_and_match(case: tuple[str, date, str]) -> None:
    """Every id built from a province code, birth date and sex validates and matches them."""
    personal_id, born, sex = case
    assert PERSONAL_ID.validate_python(personal_id) == personal_id
    check_personal_id_matches(personal_id, born, sex)  # type: ignore[arg-type]


@given(st.text(max_size=14))
def test_personal_id_never_crashes_on_hostile_text(value: str) -> None:
    """Any text either validates as a twelve-digit id or raises a ValidationError."""
    try:
        PERSONAL_ID.validate_python(value)
    except ValidationError:
        return
    assert value.isascii()
    assert len(value) == 12


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


@pytest.mark.parametrize(
    "address", [SAI_GON, BEN_THANH, THU_DAU_MOT], ids=lambda a: a["commune_name"]
)
def test_current_hcmc_wards_validate(address: dict[str, str]) -> None:
    """Wards of the 2025 list validate, Thủ Dầu Một (formerly Bình Dương) in province 79 too."""
    assert Address.model_validate(address).model_dump() == address


@pytest.mark.parametrize(
    ("changes", "field", "why"),
    [
        ({"commune_name": "Phường Bến Nghé"}, "commune_name", "official name of commune_code"),
        ({"commune_code": "26734"}, "commune_code", "in force since 1 July 2025"),
        ({"commune_code": "00004"}, "commune_code", "not in province_code"),
        ({"province_name": "Hồ Chí Minh"}, "province_name", "official name of province_code"),
        (
            {"province_code": "74", "province_name": "Tỉnh Bình Dương"},
            "province_code",
            "34 province codes",
        ),
        ({"province_code": "03"}, "province_code", "34 province codes"),
    ],
    ids=["abolished-ward", "abolished-code", "ba-dinh-in-hcmc", "short-name", "binh-duong", "03"],
)
def test_address_is_checked_against_the_2025_list(
    changes: dict[str, str], field: str, why: str
) -> None:
    """A code or name not in the 2025 list is refused under its field, saying why."""
    loc, msg = _only_error(Address, {**ADDRESS, **changes})
    assert loc == (field,)
    assert why in msg


def test_nested_address_error_keeps_the_full_path() -> None:
    """A wrong commune name inside a parent model is reported with the full path."""
    with pytest.raises(ValidationError) as error:
        ResidenceVerificationRequested.model_validate(
            {
                "personal_id": "079190012345",
                "claimed_address": {**ADDRESS, "commune_name": "Phường Bến Nghé"},
            }
        )
    assert describe_errors(error.value) == (
        "claimed_address.commune_name: is not the official name of commune_code"
    )


def test_province_names_accept_the_tinh_prefix_and_either_tone_placement() -> None:
    """'Tỉnh Khánh Hòa', 'Khánh Hoà' and 'Khánh Hòa' all name province 56."""
    base = {"commune_code": "22366", "commune_name": "Phường Nha Trang", "province_code": "56"}
    for name in ("Khánh Hòa", "Tỉnh Khánh Hòa", "Khánh Hoà"):
        assert Address.model_validate({**base, "province_name": name}).province_name == name


def test_pre_2025_address_with_its_district_validates() -> None:
    """Phường Bến Nghé, Quận 1, is valid as a record made before the reorganisation."""
    address = Address.model_validate(BEN_NGHE_2024)
    assert address.is_pre_2025
    assert address.model_dump() == BEN_NGHE_2024


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"province_code": "97"}, "province_code"),
        ({"province_code": "74", "province_name": "Tỉnh Bình Phước"}, "province_name"),
        ({"district_name": None}, "district_name"),
        ({"district_code": "76"}, "district_code"),
    ],
)
def test_pre_2025_address_is_checked_at_province_level(
    changes: dict[str, object], field: str
) -> None:
    """An older address needs a 63-list province, its name, and both district fields."""
    loc, _ = _only_error(Address, {**BEN_NGHE_2024, **changes})
    assert loc == (field,)


def test_pre_2025_binh_duong_address_validates() -> None:
    """An older address in Bình Dương (74), a province merged into HCMC, is still valid."""
    address = {
        "commune_code": "25747",
        "commune_name": "Phường Phú Cường",
        "district_code": "718",
        "district_name": "Thành phố Thủ Dầu Một",
        "province_code": "74",
        "province_name": "Tỉnh Bình Dương",
    }
    assert Address.model_validate(address).province_code == "74"


def test_current_address_serialises_without_district_keys() -> None:
    """A current address dumps exactly the five fields readers of the first schema know."""
    assert set(Address.model_validate(ADDRESS).model_dump(mode="json")) == set(ADDRESS)


@given(strategies.current_addresses())
def test_every_commune_of_the_2025_list_validates(address: dict[str, object]) -> None:
    """Any commune of the list, with its province, in NFC or NFD, validates and comes out NFC."""
    validated = Address.model_validate(address)
    assert unicodedata.is_normalized("NFC", validated.commune_name)
    assert Address.model_validate_json(validated.model_dump_json()) == validated


@given(strategies.current_addresses(), st.sampled_from(["01", "31", "48", "92"]))
def test_commune_in_another_province_is_refused(address: dict[str, object], other: str) -> None:
    """A commune paired with a province it does not belong to is refused."""
    names = {"01": "Thành phố Hà Nội", "31": "Thành phố Hải Phòng", "48": "Thành phố Đà Nẵng"}
    names["92"] = "Thành phố Cần Thơ"
    if address["province_code"] == other:
        return
    loc, msg = _only_error(
        Address, {**address, "province_code": other, "province_name": names[other]}
    )
    assert (loc, msg) == (("commune_code",), "the commune is not in province_code")


# --- BHYT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["DN4790123456789", "TE1790000000123", "HT3010123456789", "GD4740123456789"]
)
def test_valid_bhyt_numbers(value: str) -> None:
    """Group code, level 1-5, a province code and ten digits make a BHYT number."""
    assert BHYT.validate_python(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("DN479012345678", "15 characters"),
        ("DN47901234567890", "at most 15"),
        ("dn4790123456789", "15 characters"),
        ("DN 479012345678", "15 characters"),
        ("ZZ4790123456789", "group code"),
        ("DN6790123456789", "benefit level"),
        ("DN0790123456789", "benefit level"),
        ("DN4970123456789", "province code"),
        ("DN4030123456789", "province code"),
        ("DN479012345678\u0669", "15 characters"),
    ],
)
def test_invalid_bhyt_numbers_say_why(value: str, why: str) -> None:
    """Each wrong part of a BHYT number is refused with a message naming that part."""
    loc, msg = _only_error(BHYT, value)
    assert loc == ()
    assert why in msg


@given(strategies.bhyt_numbers)
def test_generated_bhyt_numbers_validate(value: str) -> None:
    """Every number built from a known group, level, province and ten digits validates."""
    assert BHYT.validate_python(value) == value


# --- land ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["CS 123456", "AA 000001", "BĐ 654321"])
def test_valid_land_certificate_serials(value: str) -> None:
    """Two capital letters, a space and six digits make a certificate serial."""
    assert SERIAL.validate_python(value) == value


@pytest.mark.parametrize(
    "value",
    ["CS123456", "CS  123456", "cs 123456", "C 123456", "CS 12345", "CS 1234567", "12 345678"],
)
def test_invalid_land_certificate_serials(value: str) -> None:
    """Serials without the single space, in lower case or of the wrong length are refused."""
    with pytest.raises(ValidationError):
        SERIAL.validate_python(value)


@given(strategies.land_serials)
def test_generated_land_serials_validate(value: str) -> None:
    """Every serial of two Vietnamese capitals and six digits validates."""
    assert SERIAL.validate_python(value) == value


def test_parcel_validates() -> None:
    """Sheet 12, parcel 345 in Phường Linh Xuân (26794) is a parcel."""
    assert Parcel.model_validate(PARCEL).model_dump() == PARCEL


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("map_sheet_number", 0),
        ("map_sheet_number", 10_000),
        ("map_sheet_number", "12"),
        ("map_sheet_number", True),
        ("parcel_number", -1),
        ("parcel_number", 100_000),
        ("parcel_number", 3.5),
        ("commune_code", "26734"),
        ("commune_code", "2679"),
    ],
)
def test_invalid_parcel_parts_name_the_field(field: str, value: object) -> None:
    """Out-of-range, non-integer or unknown parcel parts are refused under their field."""
    loc, _ = _only_error(Parcel, {**PARCEL, field: value})
    assert loc == (field,)


@given(
    st.integers(min_value=1, max_value=9999),
    st.integers(min_value=1, max_value=99999),
    strategies.current_addresses(),
)
def test_generated_parcels_validate(sheet: int, number: int, address: dict[str, object]) -> None:
    """Any sheet 1-9999 and parcel 1-99999 in a current commune is a parcel."""
    data = {"map_sheet_number": sheet, "parcel_number": number}
    data["commune_code"] = address["commune_code"]  # type: ignore[assignment]
    assert Parcel.model_validate(data).model_dump() == data


def test_address_refuses_extra_fields() -> None:
    """An address with an unknown field (the abolished district level) is refused."""
    with pytest.raises(ValidationError) as error:
        Address.model_validate({**ADDRESS, "district": "Quận 1"})
    assert error.value.errors()[0]["type"] == "extra_forbidden"
    assert error.value.errors()[0]["loc"] == ("district",)
