"""Hypothesis strategies for the shared types: real-format ids, codes and addresses."""

from __future__ import annotations

import unicodedata
from datetime import date
from typing import Any

from hypothesis import strategies as st

from schemas.admin_units import LEGACY_PROVINCES, current_units
from schemas.common import BHYT_GROUP_CODES

LEGACY_CODES = sorted(LEGACY_PROVINCES)
UNUSED_PROVINCE_CODES = sorted({f"{n:02d}" for n in range(100)} - set(LEGACY_CODES))
SERIAL_LETTERS = "ABCDEGHIKLMNOPQRSTUVXYĐ"


@st.composite
def born_and_sex(draw: st.DrawFn) -> tuple[date, str]:
    """A birth date in 1900-2099 and a sex."""
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)))
    return born, draw(st.sampled_from(["male", "female"]))


def personal_id_for(province: str, born: date, sex: str, serial: int) -> str:
    """The CCCD of a person registered in ``province`` with this birth date and sex."""
    digit = (born.year // 100 - 19) * 2 + (1 if sex == "female" else 0)
    return f"0{province}{digit}{born.year % 100:02d}{serial:06d}"


@st.composite
def personal_ids(draw: st.DrawFn) -> tuple[str, date, str]:
    """A valid CCCD with the birth date and sex it encodes."""
    born, sex = draw(born_and_sex())
    province = draw(st.sampled_from(LEGACY_CODES))
    serial = draw(st.integers(min_value=0, max_value=999_999))
    return personal_id_for(province, born, sex, serial), born, sex


bhyt_numbers = st.builds(
    lambda group, level, province, number: f"{group}{level}{province}{number:010d}",
    st.sampled_from(sorted(BHYT_GROUP_CODES)),
    st.integers(min_value=1, max_value=5),
    st.sampled_from(LEGACY_CODES),
    st.integers(min_value=0, max_value=10**10 - 1),
)

land_serials = st.builds(
    lambda letters, number: f"{letters} {number:06d}",
    st.text(SERIAL_LETTERS, min_size=2, max_size=2),
    st.integers(min_value=0, max_value=999_999),
)


def _spelling(draw: st.DrawFn, text: str) -> str:
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), text)


@st.composite
def current_addresses(draw: st.DrawFn) -> dict[str, Any]:
    """A valid address of the 2025 list, its names in NFC or NFD."""
    units = current_units()
    commune = draw(st.sampled_from(sorted(units.communes.values(), key=lambda c: c.code)))
    province = units.provinces[commune.province_code]
    province_name = province.name
    if province.is_tinh and draw(st.booleans()):
        province_name = f"Tỉnh {province_name}"
    street = draw(st.none() | st.sampled_from(["12 Lê Lợi", "7 Võ Văn Ngân", "Ấp 3"]))
    return {
        "street": street,
        "commune_code": commune.code,
        "commune_name": _spelling(draw, commune.name),
        "province_code": province.code,
        "province_name": _spelling(draw, province_name),
    }
