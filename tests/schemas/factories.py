"""Valid examples of every message type, with real diacritics and codes of the 2025 list.

The root ``tests.conftest.make_resident`` still uses a pre-2025 ward name, so the schema tests
build their own (``Phường Sài Gòn`` is code 26740 since 1 July 2025, formerly Bến Nghé).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from schemas.police import ResidentRegistered

SAI_GON = {
    "street": "12 Lê Lợi",
    "commune_code": "26740",
    "commune_name": "Phường Sài Gòn",
    "province_code": "79",
    "province_name": "Thành phố Hồ Chí Minh",
}
BEN_THANH = {
    "street": "45 Nguyễn Huệ",
    "commune_code": "26743",
    "commune_name": "Phường Bến Thành",
    "province_code": "79",
    "province_name": "Thành phố Hồ Chí Minh",
}
# Formerly in Bình Dương (74), part of Ho Chi Minh City since 1 July 2025.
THU_DAU_MOT = {
    "street": "3 Bạch Đằng",
    "commune_code": "25747",
    "commune_name": "Phường Thủ Dầu Một",
    "province_code": "79",
    "province_name": "Thành phố Hồ Chí Minh",
}
# A record made before the reorganisation: Phường Bến Nghé, Quận 1.
BEN_NGHE_2024 = {
    "street": "12 Lê Lợi",
    "commune_code": "26740",
    "commune_name": "Phường Bến Nghé",
    "district_code": "760",
    "district_name": "Quận 1",
    "province_code": "79",
    "province_name": "Thành phố Hồ Chí Minh",
}
PARCEL = {"map_sheet_number": 12, "parcel_number": 345, "commune_code": "26794"}


def resident_data(**changes: object) -> dict[str, Any]:
    """The fields of a valid registration of Nguyễn Thị Minh Khai, with ``changes``."""
    return {
        "personal_id": "079190012345",
        "full_name": "Nguyễn Thị Minh Khai",
        "date_of_birth": date(1990, 5, 17),
        "sex": "female",
        "permanent_address": SAI_GON,
        "registered_on": date(2026, 11, 20),
        **changes,
    }


def make_resident(full_name: str = "Nguyễn Thị Minh Khai", **changes: object) -> ResidentRegistered:
    """A valid police registration; ``changes`` override fields."""
    return ResidentRegistered.model_validate(resident_data(full_name=full_name, **changes))


def birth_data(**changes: object) -> dict[str, Any]:
    """A valid birth certificate of a girl born in Phường Sài Gòn in 2026."""
    return {
        "personal_id": "079326000123",
        "full_name": "Trần Ngọc Bảo Anh",
        "date_of_birth": date(2026, 3, 14),
        "sex": "female",
        "place_of_birth": {**SAI_GON, "street": None},
        "facility_code": "79024",
        "certificate_number": "1234/GCS",
        "issued_on": date(2026, 3, 15),
        "mother_personal_id": "079190012345",
        "mother_full_name": "Nguyễn Thị Minh Khai",
        "father_personal_id": "079088004321",
        "father_full_name": "Trần Văn Đức",
        **changes,
    }
