"""Realistic, entirely fictitious residents of Ho Chi Minh City and their records.

Names carry real Vietnamese diacritics; personal ids follow the CCCD layout (province 079,
century/sex digit, birth year) so that schema validation is exercised, not bypassed. Commune
codes and names are official ones of the 2025 two-level structure, which the schemas check.
BHYT numbers follow Decision 1351/QĐ-BHXH (group, benefit level, province, BHXH number);
school codes, facility codes and certificate serials have the real layouts but are invented.

Every generator is a plain function of a seeded ``random.Random`` and its inputs, so a seed
replays the same world.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Literal

from schemas.common import Address, Parcel, Sex
from schemas.education import DiplomaIssued, StudentEnrolled
from schemas.health import (
    BirthCertificateIssued,
    DeathCertificateIssued,
    HealthInsuranceCardIssued,
    VaccinationRecorded,
)
from schemas.land import LandTransferRegistered, LandUseRightCertificateIssued
from schemas.police import ResidentAddressChanged, ResidentRegistered

FAMILY = [
    *["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ"],
    *["Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Trương", "Đinh"],
]
MIDDLE_MALE = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Thanh", "Công", "Gia"]
MIDDLE_FEMALE = ["Thị", "Ngọc", "Thu", "Minh", "Thanh", "Kim", "Bảo", "Diệu"]
GIVEN_MALE = [
    *["An", "Bình", "Dũng", "Hùng", "Khánh", "Long", "Nam", "Phúc"],
    *["Quân", "Tuấn", "Việt", "Đạt", "Hiếu", "Thắng", "Trí"],
]
GIVEN_FEMALE = [
    *["Chi", "Giang", "Hà", "Hạnh", "Lan", "Linh", "Mai", "Thảo"],
    *["Trang", "Vy", "Yến", "Ngân", "Ánh", "Phương", "Hương"],
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
VIETNAM = timezone(timedelta(hours=7))


def local_day(moment: datetime) -> date:
    """The day in Vietnam (UTC+7) at ``moment``: agencies date their records by it."""
    return moment.astimezone(VIETNAM).date()


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


# --- people -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Person:
    """What an agency knows of a person: enough to build any record about them."""

    personal_id: str
    full_name: str
    date_of_birth: date
    sex: Sex | None = None
    address: Address | None = None

    @classmethod
    def of(cls, resident: ResidentRegistered) -> Person:
        """The person of a police registration."""
        return cls(
            resident.personal_id,
            resident.full_name,
            resident.date_of_birth,
            resident.sex,
            resident.permanent_address,
        )

    def age_on(self, day: date) -> int:
        """Age in whole years on ``day``."""
        birthday_passed = (day.month, day.day) >= (self.date_of_birth.month, self.date_of_birth.day)
        return day.year - self.date_of_birth.year - (0 if birthday_passed else 1)


def full_name(rng: random.Random, female: bool, family: str | None = None) -> str:
    """A Vietnamese full name: family name, middle name, given name."""
    middle = rng.choice(MIDDLE_FEMALE if female else MIDDLE_MALE)
    given = rng.choice(GIVEN_FEMALE if female else GIVEN_MALE)
    return f"{family or rng.choice(FAMILY)} {middle} {given}"


def resident_aged(
    rng: random.Random, today: date, min_age: int, max_age: int, *, female: bool | None = None
) -> ResidentRegistered:
    """A registered resident whose age on ``today`` is between ``min_age`` and ``max_age``."""
    female = rng.random() < 0.5 if female is None else female  # noqa: PLR2004 - even odds
    latest = _years_before(today, min_age)
    earliest = _years_before(today, max_age + 1) + timedelta(days=1)
    born = earliest + timedelta(days=rng.randint(0, (latest - earliest).days))
    return ResidentRegistered(
        personal_id=personal_id(rng, born, female),
        full_name=full_name(rng, female),
        date_of_birth=born,
        sex="female" if female else "male",
        permanent_address=address(rng),
        registered_on=max(born, today - timedelta(days=rng.randint(0, 30))),
    )


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def facility_code(rng: random.Random) -> str:
    """A 5-digit health facility code of the city (province 79, invented facility number)."""
    return f"79{rng.randrange(1, 1000):03d}"


# --- health -------------------------------------------------------------------------------------


def birth_certificate(
    rng: random.Random,
    today: date,
    *,
    mother: Person | None = None,
    father: Person | None = None,
) -> BirthCertificateIssued:
    """A birth certificate of a child born in the last three days, issued ``today``.

    The child takes the father's family name when the father is known (the common custom),
    else the mother's; the place of birth is the maternity's address.
    """
    female = rng.random() < 0.5  # noqa: PLR2004 - even odds
    born = today - timedelta(days=rng.randint(0, 3))
    parent = father or mother
    family = parent.full_name.split(" ", 1)[0] if parent is not None else None
    return BirthCertificateIssued(
        personal_id=personal_id(rng, born, female),
        full_name=full_name(rng, female, family),
        date_of_birth=born,
        sex="female" if female else "male",
        place_of_birth=address(rng),
        facility_code=facility_code(rng),
        certificate_number=f"{rng.randrange(1, 10_000):04d}/GCS",
        issued_on=today,
        mother_personal_id=mother.personal_id if mother else None,
        mother_full_name=mother.full_name if mother else None,
        father_personal_id=father.personal_id if father else None,
        father_full_name=father.full_name if father else None,
    )


def death_certificate(rng: random.Random, person: Person, today: date) -> DeathCertificateIssued:
    """A death certificate for ``person``, who died in the last two days (no cause: not shared)."""
    died = max(person.date_of_birth, today - timedelta(days=rng.randint(0, 2)))
    return DeathCertificateIssued(
        personal_id=person.personal_id,
        full_name=person.full_name,
        date_of_death=died,
        place_of_death=person.address if rng.random() < 0.5 else address(rng),  # noqa: PLR2004
        facility_code=facility_code(rng),
        certificate_number=f"{rng.randrange(1, 10_000):04d}/GBT",
        issued_on=today,
    )


# Benefit level (mức hưởng) of the groups the mock uses, per Decision 1351/QĐ-BHXH: 1 = 100 %,
# 2 = 100 % within limits, 3 = 95 %, 4 = 80 %.
BHYT_LEVELS = {
    **{"TE": "1", "HN": "2", "HT": "3", "CN": "3"},
    **{"HS": "4", "SV": "4", "DN": "4", "HC": "4", "GD": "4"},
}
CHILD_CARD_AGE = 6  # children under 6 are insured by the state budget (group TE)


def bhyt_group(rng: random.Random, age: int) -> str:
    """A plausible BHYT group code (mã đối tượng) for a person of ``age``."""
    if age < CHILD_CARD_AGE:
        return "TE"
    if age < 18:  # noqa: PLR2004 - pupils
        return "HS"
    if age < 22:  # noqa: PLR2004 - students
        return rng.choice(["SV", "SV", "DN"])
    if age < 60:  # noqa: PLR2004 - working age
        return rng.choice(["DN", "DN", "DN", "HC", "GD", "GD", "CN", "HN"])
    return rng.choice(["HT", "HT", "GD"])


def social_insurance_number(rng: random.Random) -> str:
    """A 10-digit social insurance number (mã số BHXH), starting with the province code."""
    return f"79{rng.randrange(10**8):08d}"


def bhyt_number(group: str, social_insurance: str) -> str:
    """The 15-character card number: group, benefit level, province 79, BHXH number."""
    return f"{group}{BHYT_LEVELS[group]}79{social_insurance}"


def insurance_card(
    rng: random.Random,
    personal_id: str,
    valid_from: date,
    *,
    group: str,
    date_of_birth: date | None = None,
    social_insurance: str | None = None,
    change_kind: Literal["issued", "renewed", "reissued", "changed"] = "issued",
) -> HealthInsuranceCardIssued:
    """A BHYT card of ``group`` valid from ``valid_from``, keeping ``social_insurance`` if given.

    A child's card (TE) runs until the day before the sixth birthday, so it needs the date of
    birth; a retiree's (HT) has no end date; others run a year.
    """
    if group == "TE":
        if date_of_birth is None:
            raise ValueError("a child's card (TE) ends with the sixth birthday: give date_of_birth")
        valid_to: date | None = _years_before(date_of_birth, -CHILD_CARD_AGE) - timedelta(days=1)
    elif group == "HT":
        valid_to = None
    else:
        valid_to = _years_before(valid_from, -1) - timedelta(days=1)
    return HealthInsuranceCardIssued(
        personal_id=personal_id,
        card_number=bhyt_number(group, social_insurance or social_insurance_number(rng)),
        change_kind=change_kind,
        valid_from=valid_from,
        valid_to=max(valid_from, valid_to) if valid_to else None,
        primary_care_facility_code=facility_code(rng),
    )


def card_terminated(card: HealthInsuranceCardIssued, last_day: date) -> HealthInsuranceCardIssued:
    """``card`` closed on ``last_day`` (the holder died): same number, cover ends that day."""
    return HealthInsuranceCardIssued(
        personal_id=card.personal_id,
        card_number=card.card_number,
        change_kind="terminated",
        valid_from=min(card.valid_from, last_day),
        valid_to=last_day,
        primary_care_facility_code=card.primary_care_facility_code,
    )


def vaccination_of(rng: random.Random, personal_id: str, today: date) -> VaccinationRecorded:
    """A vaccination of the person with ``personal_id``."""
    return VaccinationRecorded(
        personal_id=personal_id,
        vaccine_code=rng.choice(VACCINES),
        dose_number=rng.randint(1, 3),
        administered_on=today,
        facility_code=facility_code(rng),
    )


# --- education ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class School:
    """A school of the city: sector code, name, first and last grade, commune."""

    code: str
    name: str
    first_grade: int
    last_grade: int
    commune_code: str


# Names of the kind schools have; codes have the sector database's layout but are invented.
SCHOOLS = [
    School("79760101", "Trường Tiểu học Lê Ngọc Hân", 1, 5, "26740"),
    School("79760102", "Trường Tiểu học Trần Hưng Đạo", 1, 5, "26737"),
    School("79762103", "Trường Tiểu học Bình Thọ", 1, 5, "26824"),
    School("79768104", "Trường Tiểu học Phú Thọ Hòa", 1, 5, "27343"),
    School("79760201", "Trường THCS Văn Lang", 6, 9, "26743"),
    School("79762202", "Trường THCS Trường Thọ", 6, 9, "26794"),
    School("79765203", "Trường THCS Hà Huy Tập", 6, 9, "26944"),
    School("79000301", "Trường THPT Lê Quý Đôn", 10, 12, "26740"),
    School("79000302", "Trường THPT Nguyễn Thị Minh Khai", 10, 12, "26743"),
    School("79000303", "Trường THPT Thủ Đức", 10, 12, "26824"),
]
ENTRY_GRADES = (1, 6, 10)  # primary, lower and upper secondary admissions


def school_year(today: date) -> tuple[str, date]:
    """The school year an admission made ``today`` is for, and the pupil's first day.

    Before the opening day (5 September) an admission is for the year about to start; after
    it, the pupil joins the running year on the day itself.
    """
    return f"{today.year}-{today.year + 1}", max(date(today.year, 9, 5), today)


def grade_in(date_of_birth: date, year: str) -> int:
    """The grade of a pupil born on ``date_of_birth`` in school year ``year`` (grade 1 at 6)."""
    return int(year[:4]) - date_of_birth.year - 5


def enrolment(
    rng: random.Random, person: Person, today: date, grade: int | None = None
) -> StudentEnrolled | None:
    """``person``'s enrolment in a school for the coming year, or ``None`` if not of school age.

    A school near the pupil's commune is preferred, as catchment areas follow residence.
    """
    year, start = school_year(today)
    grade = grade or grade_in(person.date_of_birth, year)
    if not 1 <= grade <= 12:  # noqa: PLR2004 - grades 1 to 12
        return None
    fitting = [s for s in SCHOOLS if s.first_grade <= grade <= s.last_grade]
    commune = person.address.commune_code if person.address else None
    nearby = [s for s in fitting if s.commune_code == commune]
    school = rng.choice(nearby or fitting)
    return StudentEnrolled(
        personal_id=person.personal_id,
        full_name=person.full_name,
        school_code=school.code,
        grade=grade,
        school_year=year,
        start_date=start,
    )


def diploma(rng: random.Random, person: Person, today: date) -> DiplomaIssued:
    """A diploma for ``person``: lower secondary at 15 or younger, upper secondary after."""
    lower = person.age_on(today) <= 15  # noqa: PLR2004 - end of grade 9
    return DiplomaIssued(
        personal_id=person.personal_id,
        full_name=person.full_name,
        kind="lower_secondary" if lower else "upper_secondary",
        serial=f"{'B' if lower else 'A'} {rng.randrange(10**7):07d}",
        issued_on=today,
    )


# --- land ---------------------------------------------------------------------------------------

SERIAL_SERIES = ["CS", "CT", "CU", "CV", "CX", "CY", "DA", "DB", "DĐ"]


def certificate_serial(rng: random.Random) -> str:
    """A certificate blank serial (số phát hành): series letters and six digits."""
    return f"{rng.choice(SERIAL_SERIES)} {rng.randrange(10**6):06d}"


def parcel(rng: random.Random) -> Parcel:
    """A parcel of a commune of the city."""
    code, _ = rng.choice(COMMUNES)
    return Parcel(
        map_sheet_number=rng.randint(1, 80),
        parcel_number=rng.randint(1, 900),
        commune_code=code,
    )


def land_certificate(
    rng: random.Random, owner: Person, today: date
) -> LandUseRightCertificateIssued:
    """A land-use-right certificate for ``owner``: urban plots in wards, larger ones in communes."""
    plot = parcel(rng)
    rural = dict(COMMUNES)[plot.commune_code].startswith("Xã")
    area = rng.uniform(100, 2000) if rural else rng.uniform(30, 250)
    return LandUseRightCertificateIssued(
        personal_id=owner.personal_id,
        full_name=owner.full_name,
        certificate_serial=certificate_serial(rng),
        parcel=plot,
        area_m2=round(area, 1),
        use_purpose_code=rng.choice(["ONT", "ONT+CLN", "CLN"]) if rural else "ODT",
        issued_on=today,
    )


TransferKind = Literal["sale", "gift", "inheritance", "exchange"]


def land_transfer(
    rng: random.Random,
    holding: LandUseRightCertificateIssued,
    transferee: Person,
    today: date,
    kind: TransferKind = "sale",
) -> LandTransferRegistered:
    """The transfer of ``holding``'s whole parcel to ``transferee``, with a new certificate."""
    return LandTransferRegistered(
        personal_id=transferee.personal_id,
        full_name=transferee.full_name,
        transferor_personal_id=holding.personal_id,
        transfer_kind=kind,
        parcel=holding.parcel,
        area_m2=holding.area_m2,
        certificate_serial=certificate_serial(rng),
        registered_on=today,
    )
