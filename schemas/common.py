"""Types shared by every agency: personal id (CCCD), names, addresses."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from schemas.base import Record

Sex = Literal["male", "female"]

# Century/sex digit of the CCCD (Circular 07/2016/TT-BCA, art. 7): even for men, odd for women,
# one pair per century starting with the 1900s.
_CENTURY_DIGIT_BASE = {0: 1900, 2: 2000, 4: 2100, 6: 2200, 8: 2300}
_NAME = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")


def _check_personal_id(value: str) -> str:
    province = int(value[:3])
    if not 1 <= province <= 96:  # noqa: PLR2004 - province codes of the CCCD run from 001 to 096
        raise ValueError("the first three digits must be a province code 001-096")
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


class Address(Record):
    """An address in the two-level structure in force since 1 July 2025 (province, commune)."""

    street: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="House number and street, e.g. '12 Lê Lợi'"
    )
    commune_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")] = Field(
        description="5-digit commune/ward code (mã xã/phường)"
    )
    commune_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Commune or ward name, e.g. 'Phường Sài Gòn'"
    )
    province_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$")] = Field(
        description="2-digit province code (mã tỉnh), 79 for Ho Chi Minh City"
    )
    province_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] = Field(
        description="Province name, e.g. 'Thành phố Hồ Chí Minh'"
    )
