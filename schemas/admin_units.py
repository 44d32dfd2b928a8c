"""Vietnam's administrative unit codes, before and after the reorganisation of 1 July 2025.

Two lists are used:

- **Current (since 1 July 2025)**: 34 provinces and 3,321 communes (xã, phường, đặc khu) in two
  levels, read from the `vietnam-provinces` package (data of the General Statistics Office,
  danhmuchanhchinh.gso.gov.vn, as published for the new units; the package's
  ``__data_version__`` is exposed here as ``DATA_VERSION``). Ho Chi Minh City keeps code 79 and
  holds the former Bình Dương (74) and Bà Rịa - Vũng Tàu (77). A commune code is unique in the
  country, 5 digits with leading zeros.
- **Pre-2025 provinces**: the 63 province codes of Decision 124/2004/QĐ-TTg, as in the GSO list
  of 4 January 2025 (`vietnam-provinces` 0.6.0, the last release with three levels). They stay
  in use where a code was fixed before the reorganisation: the first three digits of a CCCD
  (Circular 07/2016/TT-BCA: the province code with a leading 0), the province part of a BHYT
  card number, and addresses of records made before 1 July 2025. Every current code is one of
  them. The package ships no pre-2025 districts or communes any more, so an older address is
  checked at the province level only (see ``schemas.common.Address``).

Names are compared by ``name_key``: NFC, single spaces, and the old and new placements of the
tone mark in "oa", "oe", "uy" (Hoà / Hòa) treated alike, since both spellings are in official use.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from types import MappingProxyType

import vietnam_provinces

DATA_VERSION: str = vietnam_provinces.__data_version__

# Decision 124/2004/QĐ-TTg codes as listed by the GSO on 2025-01-04, with their names then.
LEGACY_PROVINCES: MappingProxyType[str, str] = MappingProxyType(
    {
        "01": "Thành phố Hà Nội",
        "02": "Tỉnh Hà Giang",
        "04": "Tỉnh Cao Bằng",
        "06": "Tỉnh Bắc Kạn",
        "08": "Tỉnh Tuyên Quang",
        "10": "Tỉnh Lào Cai",
        "11": "Tỉnh Điện Biên",
        "12": "Tỉnh Lai Châu",
        "14": "Tỉnh Sơn La",
        "15": "Tỉnh Yên Bái",
        "17": "Tỉnh Hòa Bình",
        "19": "Tỉnh Thái Nguyên",
        "20": "Tỉnh Lạng Sơn",
        "22": "Tỉnh Quảng Ninh",
        "24": "Tỉnh Bắc Giang",
        "25": "Tỉnh Phú Thọ",
        "26": "Tỉnh Vĩnh Phúc",
        "27": "Tỉnh Bắc Ninh",
        "30": "Tỉnh Hải Dương",
        "31": "Thành phố Hải Phòng",
        "33": "Tỉnh Hưng Yên",
        "34": "Tỉnh Thái Bình",
        "35": "Tỉnh Hà Nam",
        "36": "Tỉnh Nam Định",
        "37": "Tỉnh Ninh Bình",
        "38": "Tỉnh Thanh Hóa",
        "40": "Tỉnh Nghệ An",
        "42": "Tỉnh Hà Tĩnh",
        "44": "Tỉnh Quảng Bình",
        "45": "Tỉnh Quảng Trị",
        "46": "Thành phố Huế",
        "48": "Thành phố Đà Nẵng",
        "49": "Tỉnh Quảng Nam",
        "51": "Tỉnh Quảng Ngãi",
        "52": "Tỉnh Bình Định",
        "54": "Tỉnh Phú Yên",
        "56": "Tỉnh Khánh Hòa",
        "58": "Tỉnh Ninh Thuận",
        "60": "Tỉnh Bình Thuận",
        "62": "Tỉnh Kon Tum",
        "64": "Tỉnh Gia Lai",
        "66": "Tỉnh Đắk Lắk",
        "67": "Tỉnh Đắk Nông",
        "68": "Tỉnh Lâm Đồng",
        "70": "Tỉnh Bình Phước",
        "72": "Tỉnh Tây Ninh",
        "74": "Tỉnh Bình Dương",
        "75": "Tỉnh Đồng Nai",
        "77": "Tỉnh Bà Rịa - Vũng Tàu",
        "79": "Thành phố Hồ Chí Minh",
        "80": "Tỉnh Long An",
        "82": "Tỉnh Tiền Giang",
        "83": "Tỉnh Bến Tre",
        "84": "Tỉnh Trà Vinh",
        "86": "Tỉnh Vĩnh Long",
        "87": "Tỉnh Đồng Tháp",
        "89": "Tỉnh An Giang",
        "91": "Tỉnh Kiên Giang",
        "92": "Thành phố Cần Thơ",
        "93": "Tỉnh Hậu Giang",
        "94": "Tỉnh Sóc Trăng",
        "95": "Tỉnh Bạc Liêu",
        "96": "Tỉnh Cà Mau",
    }
)

# "Hoà" and "Hòa" are both official spellings (the tone on the second or the first vowel of
# "oa", "oe", "uy"); the key puts it on the first.
_TONE_ON_SECOND = dict(
    zip(
        [f"o{m}" for m in "àáảãạèéẻẽẹ"] + [f"u{m}" for m in "ỳýỷỹỵ"],
        [f"{o}{v}" for v in "ae" for o in "òóỏõọ"] + [f"{u}y" for u in "ùúủũụ"],
        strict=True,
    )
)
_SPACES = re.compile(r"\s+")


@lru_cache(maxsize=8192)  # unit names are few; every address is checked on the hot path
def name_key(name: str) -> str:
    """The form in which two spellings of one unit's name compare equal."""
    key = _SPACES.sub(" ", unicodedata.normalize("NFC", name)).strip()
    for second, first in _TONE_ON_SECOND.items():
        key = key.replace(second, first)
    return key


@dataclass(frozen=True)
class Province:
    """A province-level unit: 2-digit code, official name, and whether it is a tỉnh."""

    code: str
    name: str
    is_tinh: bool

    def accepts_name(self, name: str) -> bool:
        """Whether ``name`` spells this province ('Cao Bằng' and 'Tỉnh Cao Bằng' both do)."""
        key = name_key(name)
        names = {self.name, f"Tỉnh {self.name}"} if self.is_tinh else {self.name}
        return key in {name_key(n) for n in names}


@dataclass(frozen=True)
class Commune:
    """A commune-level unit of the current list: code, official name, province code."""

    code: str
    name: str
    province_code: str


@dataclass(frozen=True)
class AdminUnits:
    """The current two-level list, indexed by code."""

    provinces: MappingProxyType[str, Province]
    communes: MappingProxyType[str, Commune]


@cache
def current_units() -> AdminUnits:
    """The units in force since 1 July 2025, loaded once from the package's JSON data."""
    raw = json.loads(vietnam_provinces.NESTED_DIVISIONS_JSON_PATH.read_text(encoding="utf-8"))
    provinces: dict[str, Province] = {}
    communes: dict[str, Commune] = {}
    for province in raw:
        code = f"{province['code']:02d}"
        name = unicodedata.normalize("NFC", province["name"])
        provinces[code] = Province(code, name, province["division_type"] == "tỉnh")
        for ward in province["wards"]:
            ward_code = f"{ward['code']:05d}"
            ward_name = name_key(ward["name"])  # the data has a stray double space or two
            communes[ward_code] = Commune(ward_code, ward_name, code)
    return AdminUnits(MappingProxyType(provinces), MappingProxyType(communes))


def legacy_province(code: str) -> Province | None:
    """The pre-2025 province of ``code``, or ``None`` when no such code was in use."""
    name = LEGACY_PROVINCES.get(code)
    if name is None:
        return None
    return Province(code, name.removeprefix("Tỉnh "), name.startswith("Tỉnh "))
