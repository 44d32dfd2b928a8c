"""Events of the Department of Education and Training."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.education import DiplomaIssued, StudentEnrolled

ENROLMENT = {
    "personal_id": "079220001234",
    "full_name": "Phạm Gia Huy",
    "school_code": "79000701",
    "grade": 1,
    "school_year": "2026-2027",
    "start_date": date(2026, 9, 5),
}
DIPLOMA = {
    "personal_id": "079208001234",
    "full_name": "Võ Thị Thu Hà",
    "kind": "upper_secondary",
    "serial": "B 0123456",
    "issued_on": date(2026, 7, 30),
}


def test_enrolment_validates() -> None:
    """A first-grader enrolled for 2026-2027 on 5 September 2026 validates."""
    event = StudentEnrolled.model_validate(ENROLMENT)
    assert event.subject_id() == "079220001234"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("school_year", "2026-2028"),
        ("school_year", "2026/2027"),
        ("school_year", "26-27"),
        ("grade", 0),
        ("grade", 13),
        ("grade", "1"),
        ("school_code", "79 000701"),
    ],
)
def test_enrolment_field_errors_name_the_field(field: str, value: object) -> None:
    """A bad school year, grade or school code is reported under its field."""
    with pytest.raises(ValidationError) as error:
        StudentEnrolled.model_validate({**ENROLMENT, field: value})
    assert [e["loc"] for e in error.value.errors()] == [(field,)]


def test_school_year_error_says_why() -> None:
    """A school year of non-consecutive years is refused with an example of the format."""
    with pytest.raises(ValidationError, match=r"two consecutive years, e\.g\. '2026-2027'"):
        StudentEnrolled.model_validate({**ENROLMENT, "school_year": "2026-2028"})


def test_start_outside_the_school_year_is_refused() -> None:
    """A start in 2028 is outside the school year 2026-2027."""
    with pytest.raises(ValidationError, match="start_date is outside school_year"):
        StudentEnrolled.model_validate({**ENROLMENT, "start_date": date(2028, 1, 5)})


@given(st.integers(min_value=2000, max_value=2098), st.integers(min_value=1, max_value=12))
def test_any_consecutive_school_year_validates(first: int, grade: int) -> None:
    """Every school year of two consecutive years with a start in its first year validates."""
    event = StudentEnrolled.model_validate(
        {
            **ENROLMENT,
            "school_year": f"{first}-{first + 1}",
            "grade": grade,
            "start_date": date(first, 9, 5),
        }
    )
    assert event.school_year == f"{first}-{first + 1}"


def test_diploma_validates() -> None:
    """An upper-secondary diploma of Võ Thị Thu Hà validates."""
    assert DiplomaIssued.model_validate(DIPLOMA).kind == "upper_secondary"


@pytest.mark.parametrize(
    ("field", "value"), [("kind", "doctorate"), ("serial", ""), ("serial", "b 0123456")]
)
def test_diploma_field_errors_name_the_field(field: str, value: str) -> None:
    """An unknown diploma kind or a malformed serial is reported under its field."""
    with pytest.raises(ValidationError) as error:
        DiplomaIssued.model_validate({**DIPLOMA, field: value})
    assert [e["loc"] for e in error.value.errors()] == [(field,)]
