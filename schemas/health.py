"""Events of the Department of Health (Sở Y tế)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints

from schemas.base import EventModel
from schemas.common import PersonalId


class VaccinationRecorded(EventModel):
    """A vaccination was recorded in the immunisation register (tiêm chủng)."""

    event_type: ClassVar[str] = "vn.hcm.health.vaccination_recorded.v1"

    personal_id: PersonalId
    vaccine_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9-]{2,20}$")]
    dose_number: int = Field(ge=1, le=10)
    administered_on: date
    facility_code: Annotated[str, StringConstraints(pattern=r"^[0-9]{5}$")] = Field(
        description="5-digit health facility code (mã cơ sở khám chữa bệnh)"
    )
