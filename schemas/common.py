"""Types shared by every agency: personal id (CCCD), names, addresses, BHYT and land identifiers.

Each check raises ``ValueError`` with a message that says what the field must be; pydantic puts
the field's name in the error location. Messages never repeat the value (it is often personal
data and goes into receipts and logs).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.admin_units import LEGACY_PROVINCES, current_units, legacy_province, name_key
from schemas.base import Record

Sex = Literal["male", "female"]

# Century/sex digit of the CCCD (Circular 07/2016/TT-BCA, art. 7): even for men, odd for women,
# one pair per century starting with the 1900s.
_CENTURY_DIGIT_BASE = {0: 1900, 2: 2000, 4: 2100, 6: 2200, 8: 2300}
_NAME = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")


def _check_personal_id(value: str) -> str:
    # The CCCD's first three digits are the province of birth registration: one of the 63
    # pre-2025 province codes with a leading 0 (001 Hà Nội ... 079 TP HCM ... 096 Cà Mau).
    # Ids keep their code after the 2025 merger, and the 34 current codes are among the 63.
    if value[0] != "0" or value[1:3] not in LEGACY_PROVINCES:
        raise ValueError(
            "the first three digits must be a CCCD province code, 0 and one of the 63 "
            "province codes (001 Hà Nội to 096 Cà Mau; 003, 005, 097 and others are unused)"
        )
    return value


PersonalId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{12}$"),
    AfterValidator(_check_personal_id),
    Field(description="12-digit citizen identity number (CCCD / số định danh cá nhân)"),
]


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError("a name holds letters separated by single spaces, hyphens or apostrophes")
    return value


PersonName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100),
    AfterValidator(_check_name),
    Field(description="Full name in Vietnamese, Unicode NFC, e.g. 'Nguyễn Thị Minh Khai'"),
]


def check_personal_id_matches(personal_id: str, date_of_birth: date, sex: Sex) -> None:
    """Raise ``ValueError`` unless the CCCD's century/sex digit and birth year agree."""
    digit = int(personal_id[3])
    century = _CENTURY_DIGIT_BASE[digit - digit % 2]
    if date_of_birth.year // 100 * 100 != century:
        raise ValueError("personal_id century digit does not match date_of_birth")
    if (digit % 2 == 1) != (sex == "female"):
        raise ValueError("personal_id sex digit does not match sex")
    if int(personal_id[4:6]) != date_of_birth.year % 100:
        raise ValueError("personal_id birth-year digits do not match date_of_birth")


# --- health insurance (BHYT) -------------------------------------------------------------------

# Group codes (mã đối tượng) of Decision 1351/QĐ-BHXH of 16 November 2015, by who pays:
BHYT_GROUP_CODES = frozenset(
    [
        # employer and employee
        *("DN", "HX", "CH", "NN", "TK", "HC", "XK"),
        # the social insurance fund
        *("HT", "TB", "NO", "CT", "XB", "TN", "CS"),
        # the state budget
        *("QN", "CA", "CY", "XN", "MS", "CC", "CK", "CB", "KC", "HD", "TE", "BT"),
        *("HN", "DT", "DK", "XD", "TS", "TC", "TQ", "TA", "TY", "HG", "LS", "PV"),
        # supported by the state budget
        *("CN", "HS", "SV", "GB"),
        # households
        "GD",
    ]
)
_BHYT = re.compile(r"[A-Z]{2}[0-9]{13}")


def _check_bhyt_number(value: str) -> str:
    if not _BHYT.fullmatch(value):
        raise ValueError(
            "a BHYT card number is 15 characters: 2 capital letters then 13 digits, no spaces"
        )
    if value[:2] not in BHYT_GROUP_CODES:
        raise ValueError(
            "the first two letters must be a BHYT group code (mã đối tượng) of "
            "Decision 1351/QĐ-BHXH, such as DN, HC, HT, TE, HS, HN, CN or GD"
        )
    if not "1" <= value[2] <= "5":
        raise ValueError("the third character must be a benefit level (mức hưởng) from 1 to 5")
    if value[3:5] not in LEGACY_PROVINCES:
        raise ValueError(
            "characters 4-5 must be a province code (mã tỉnh), one of the 63 codes 01-96 in use"
        )
    return value


HealthInsuranceNumber = Annotated[
    str,
    StringConstraints(max_length=15),
    AfterValidator(_check_bhyt_number),
    Field(
        description=(
            "15-character BHYT card number: group code, benefit level 1-5, 2-digit province "
            "code, 10-digit social insurance number (mã số BHXH), e.g. 'DN4790123456789'"
        )
    ),
]

FacilityCode = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{5}$"),
    Field(description="5-digit health facility code (mã cơ sở khám chữa bệnh), e.g. '79024'"),
]

# --- land --------------------------------------------------------------------------------------

_SERIAL = re.compile(r"[A-ZĐ]{2} [0-9]{6}")


def _check_land_serial(value: str) -> str:
    if not _SERIAL.fullmatch(value):
        raise ValueError(
            "a certificate serial (số phát hành) is 2 capital letters, one space and 6 digits, "
            "e.g. 'CS 123456'"
        )
    return value


LandCertificateSerial = Annotated[
    str,
    StringConstraints(max_length=9),
    AfterValidator(_check_land_serial),
    Field(
        description=(
            "Serial printed on the certificate blank (số phát hành / số seri): 2 letters of the "
            "Vietnamese alphabet and 6 digits (Circular 23/2014/TT-BTNMT), e.g. 'CS 123456'"
        )
    ),
]


# --- administrative units ----------------------------------------------------------------------

CommuneCode = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{5}$"),
    Field(description="5-digit commune/ward code (mã xã/phường), e.g. '26740' Phường Sài Gòn"),
]


def _check_current_commune(value: str) -> str:
    if value not in current_units().communes:
        raise ValueError("not a commune code of the list in force since 1 July 2025")
    return value


CurrentCommuneCode = Annotated[CommuneCode, AfterValidator(_check_current_commune)]


def _field_error(field: str, message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("administrative_unit", message), loc=(field,), input=value
    )


class Address(Record):
    """An address in the two-level structure in force since 1 July 2025 (province, commune).

    The commune must exist in the current list, belong to the province, and both names must
    be the official ones (compared by ``schemas.admin_units.name_key``). A record made before
    the reorganisation may carry its district (``district_code``, ``district_name``): its
    province is then checked against the 63 pre-2025 provinces, and its district and commune
    by format only, as no maintained package ships the pre-2025 commune list any more.
    """

    street: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="House number and street, e.g. '12 Lê Lợi'"
    )
    commune_code: CommuneCode
    commune_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Commune or ward name, e.g. 'Phường Sài Gòn'"
    )
    province_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")] = Field(
        description="2-digit province code (mã tỉnh), 79 for Ho Chi Minh City"
    )
    province_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Province name, e.g. 'Thành phố Hồ Chí Minh'"
    )
    district_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{3}$")] | None = Field(
        default=None,
        description="3-digit district code (mã huyện) of a record made before 1 July 2025",
    )
    district_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        default=None, description="District name of a record made before 1 July 2025"
    )

    @model_validator(mode="after")
    def _known_units(self) -> Self:
        errors = self._legacy_errors() if self.is_pre_2025 else self._current_errors()
        if errors:
            # Raised as a ValidationError so that each error keeps its own field location.
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @model_serializer(mode="wrap")
    def _omit_unset_district(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The district fields came after the first published schema, whose readers forbid
        # unknown keys: a current address must serialise exactly as it did before them.
        data: dict[str, Any] = handler(self)
        for name in ("district_code", "district_name"):
            if data.get(name, "") is None:
                del data[name]
        return data

    @property
    def is_pre_2025(self) -> bool:
        """Whether this address was recorded in the three-level structure (it has a district)."""
        return self.district_code is not None or self.district_name is not None

    def _current_errors(self) -> list[InitErrorDetails]:
        units = current_units()
        province = units.provinces.get(self.province_code)
        if province is None:
            return [
                _field_error(
                    "province_code",
                    "not one of the 34 province codes in force since 1 July 2025 (give the "
                    "district of a record made before then)",
                    self.province_code,
                )
            ]
        errors: list[InitErrorDetails] = []
        if not province.accepts_name(self.province_name):
            errors.append(
                _field_error(
                    "province_name", "is not the official name of province_code", self.province_name
                )
            )
        commune = units.communes.get(self.commune_code)
        if commune is None:
            errors.append(
                _field_error(
                    "commune_code",
                    "not a commune code of the list in force since 1 July 2025",
                    self.commune_code,
                )
            )
        elif commune.province_code != self.province_code:
            errors.append(
                _field_error(
                    "commune_code", "the commune is not in province_code", self.commune_code
                )
            )
        elif name_key(self.commune_name) != commune.name:
            errors.append(
                _field_error(
                    "commune_name", "is not the official name of commune_code", self.commune_name
                )
            )
        return errors

    def _legacy_errors(self) -> list[InitErrorDetails]:
        errors: list[InitErrorDetails] = []
        if self.district_code is None or self.district_name is None:
            missing = "district_code" if self.district_code is None else "district_name"
            errors.append(
                _field_error(missing, "a pre-2025 address gives district code and name", None)
            )
        province = legacy_province(self.province_code)
        if province is None:
            errors.append(
                _field_error(
                    "province_code",
                    "not one of the 63 province codes in use before 1 July 2025",
                    self.province_code,
                )
            )
        elif not province.accepts_name(self.province_name):
            errors.append(
                _field_error(
                    "province_name",
                    "is not the pre-2025 official name of province_code",
                    self.province_name,
                )
            )
        return errors


class Parcel(Record):
    """A land parcel (thửa đất): map sheet and parcel number within a commune."""

    map_sheet_number: int = Field(
        strict=True,
        ge=1,
        le=9999,
        description="Cadastral map sheet number (tờ bản đồ số) within the commune",
    )
    parcel_number: int = Field(
        strict=True, ge=1, le=99999, description="Parcel number (thửa đất số) on the map sheet"
    )
    commune_code: CurrentCommuneCode
