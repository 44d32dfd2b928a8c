"""Realistic, entirely fictitious residents of Ho Chi Minh City for the mock agencies.

Names carry real Vietnamese diacritics; personal ids follow the CCCD layout (province 079,
century/sex digit, birth year) so that schema validation is exercised, not bypassed. Commune
codes and names are official ones of the 2025 two-level structure, which the schemas check.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from schemas.common import Address
from schemas.health import VaccinationRecorded
from schemas.police import ResidentAddressChanged, ResidentRegistered

FAMILY = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
    "Trương",
    "Đinh",
]
MIDDLE_MALE = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Gia"]
MIDDLE_FEMALE = ["Thị", "Ngọc", "Thu", "Minh", "Thanh", "Kim", "Bảo", "Diệu"]
GIVEN_MALE = [
    "An",
    "Bình",
    "Dũng",
    "Hùng",
    "Khánh",
    "Long",
    "Nam",
    "Phúc",
    "Quân",
    "Tuấn",
    "Việt",
    "Đạt",
    "Hiếu",
    "Thắng",
    "Trí",
]
GIVEN_FEMALE = [
    "Chi",
    "Giang",
    "Hà",
    "Hạnh",
    "Lan",
    "Linh",
    "Mai",
    "Thảo",
    "Trang",
    "Vy",
    "Yến",
    "Ngân",
    "Ánh",
    "Phương",
    "Hương",
]
STREETS = [
    "Lê Lợi",
    "Nguyễn Huệ",
    "Đồng Khởi",
    "Pasteur",
    "Võ Văn Tần",
    "Điện Biên Phủ",
    "Cách Mạng Tháng Tám",
    "Nguyễn Thị Minh Khai",
    "Hai Bà Trưng",
    "Lý Tự Trọng",
    "Võ Văn Ngân",
    "Kha Vạn Cân",
    "Phạm Văn Đồng",
]
# (commune code, commune name): illustrative codes for wards of Ho Chi Minh City.
COMMUNES = [  # official codes of the 2025 two-level structure (vietnam-provinces)
    ("26740", "Phường Sài Gòn"),
    ("26743", "Phường Bến Thành"),
    ("26737", "Phường Tân Định"),
    ("26824", "Phường Thủ Đức"),
    ("26794", "Phường Linh Xuân"),
    ("26944", "Phường Gia Định"),
    ("27343", "Phường Chợ Lớn"),
    ("27664", "Xã Cần Giờ"),
    ("27553", "Xã Củ Chi"),
    ("25747", "Phường Thủ Dầu Một"),
    ("26506", "Phường Vũng Tàu"),
]
VACCINES = ["BCG", "VGB-0", "DPT-VGB-HIB", "OPV", "MR", "JE-VAX"]
PROVINCE_CODE, PROVINCE_NAME = "79", "Thành phố Hồ Chí Minh"


def personal_id(rng: random.Random, born: date, female: bool) -> str:
    """A CCCD number consistent with birth date and sex (province 079, Ho Chi Minh City)."""
    century_digit = (born.year // 100 - 19) * 2 + (1 if female else 0)
    return f"079{century_digit}{born.year % 100:02d}{rng.randrange(10**6):06d}"


def address(rng: random.Random) -> Address:
    """A street address in a ward of the city."""
    code, name = rng.choice(COMMUNES)
    return Address(
        street=f"{rng.randint(1, 299)} {rng.choice(STREETS)}",
        commune_code=code,
        commune_name=name,
        province_code=PROVINCE_CODE,
        province_name=PROVINCE_NAME,
    )


def resident(rng: random.Random, today: date) -> ResidentRegistered:
    """A newly registered resident."""
    female = rng.random() < 0.5  # noqa: PLR2004 - even odds
    born = today - timedelta(days=rng.randint(0, 90 * 365))
    middle = rng.choice(MIDDLE_FEMALE if female else MIDDLE_MALE)
    given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    return ResidentRegistered(
        personal_id=personal_id(rng, born, female),
        full_name=f"{rng.choice(FAMILY)} {middle} {given}",
        date_of_birth=born,
        sex="female" if female else "male",
        permanent_address=address(rng),
        registered_on=max(born, today - timedelta(days=rng.randint(0, 30))),
    )


def address_change(
    rng: random.Random, person: ResidentRegistered, today: date
) -> ResidentAddressChanged:
    """A change of residence for ``person``."""
    return ResidentAddressChanged(
        personal_id=person.personal_id,
        full_name=person.full_name,
        residence_kind=rng.choice(["permanent", "temporary"]),
        previous_address=person.permanent_address,
        new_address=address(rng),
        effective_on=today,
    )


def vaccination(rng: random.Random, person: ResidentRegistered, today: date) -> VaccinationRecorded:
    """A vaccination of ``person``."""
    return VaccinationRecorded(
        personal_id=person.personal_id,
        vaccine_code=rng.choice(VACCINES),
        dose_number=rng.randint(1, 3),
        administered_on=today,
        facility_code=f"79{rng.randrange(1000):03d}",
    )
