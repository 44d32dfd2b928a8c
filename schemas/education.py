"""Events of the Department of Education and Training (Sở Giáo dục và Đào tạo)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.base import EventModel
from schemas.common import PersonalId, PersonName

_SCHOOL_YEAR = re.compile(r"(20[0-9]{2})-(20[0-9]{2})")


def _check_school_year(value: str) -> str:
    found = _SCHOOL_YEAR.fullmatch(value)
    if found is None or int(found[2]) != int(found[1]) + 1:
        raise ValueError("a school year is two consecutive years, e.g. '2026-2027'")
    return value


SchoolYear = Annotated[
    str,
    StringConstraints(max_length=9),
    AfterValidator(_check_school_year),
    Field(description="School year (năm học), e.g. '2026-2027'"),
]

SchoolCode = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Z]{3,12}$"),
    Field(description="School code in the education sector database (mã trường)"),
]


class StudentEnrolled(EventModel):
    """A pupil was enrolled in a school for a school year (tuyển sinh / nhập học)."""

    event_type: ClassVar[str] = "vn.hcm.education.student_enrolled.v1"

    personal_id: PersonalId
    full_name: PersonName
    school_code: SchoolCode
    grade: int = Field(strict=True, ge=1, le=12, description="Grade (lớp) 1-12")
    school_year: SchoolYear
    start_date: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        first, second = (int(year) for year in self.school_year.split("-"))
        if self.start_date.year not in (first, second):
            raise ValueError("start_date is outside school_year")
        return self


class DiplomaIssued(EventModel):
    """A diploma (văn bằng) was issued to a graduate."""

    event_type: ClassVar[str] = "vn.hcm.education.diploma_issued.v1"

    personal_id: PersonalId
    full_name: PersonName
    kind: Literal["lower_secondary", "upper_secondary"] = Field(
        description="lower_secondary: bằng tốt nghiệp THCS; upper_secondary: THPT"
    )
    serial: Annotated[str, StringConstraints(pattern=r"^[0-9A-Z][0-9A-Z/ \-]{2,29}$")] = Field(
        description="Serial printed on the diploma blank (số hiệu văn bằng)"
    )
    issued_on: date
