"""Events of the Department of Health (Sở Y tế): births, deaths, BHYT cards, vaccinations."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from schemas.base import EventModel
from schemas.common import (
    Address,
    FacilityCode,
    HealthInsuranceNumber,
    PersonalId,
    PersonName,
    Sex,
    check_personal_id_matches,
)

CertificateNumber = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9A-Z][0-9A-Z/.\-]{0,29}$"),
    Field(description="Number of the certificate in the facility's book, e.g. '1234/GCS'"),
]


class BirthCertificateIssued(EventModel):
    """A facility issued a birth certificate (giấy chứng sinh); the subject is the child."""

    event_type: ClassVar[str] = "vn.hcm.health.birth_certificate_issued.v1"

    personal_id: PersonalId = Field(description="The child's personal id")
    full_name: PersonName
    date_of_birth: date
    sex: Sex
    place_of_birth: Address
    facility_code: FacilityCode
    certificate_number: CertificateNumber
    issued_on: date
    mother_personal_id: PersonalId | None = None
    mother_full_name: PersonName | None = None
    father_personal_id: PersonalId | None = None
    father_full_name: PersonName | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_personal_id_matches(self.personal_id, self.date_of_birth, self.sex)
        if self.issued_on < self.date_of_birth:
            raise ValueError("issued_on is before date_of_birth")
        if self.personal_id in (self.mother_personal_id, self.father_personal_id):
            raise ValueError("a parent's personal id is the child's personal_id")
        if self.mother_personal_id is not None and (
            self.mother_personal_id == self.father_personal_id
        ):
            raise ValueError("mother_personal_id and father_personal_id are the same")
        return self


class DeathCertificateIssued(EventModel):
    """A facility issued a death certificate (giấy báo tử); the cause of death is not shared."""

    event_type: ClassVar[str] = "vn.hcm.health.death_certificate_issued.v1"

    personal_id: PersonalId
    full_name: PersonName
    date_of_death: date
    place_of_death: Address | None = None
    facility_code: FacilityCode
    certificate_number: CertificateNumber
    issued_on: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.issued_on < self.date_of_death:
            raise ValueError("issued_on is before date_of_death")
        return self


class HealthInsuranceCardIssued(EventModel):
    """A BHYT card was issued, renewed, reissued or changed for a person.

    ``change_kind``: ``issued`` (cấp mới), ``renewed`` (gia hạn), ``reissued`` (cấp lại, lost
    or damaged card), ``changed`` (đổi thẻ: group, benefit level or facility changed),
    ``terminated`` (chấm dứt, e.g. the holder died; ``valid_to`` is the last day of cover).
    """

    event_type: ClassVar[str] = "vn.hcm.health.health_insurance_card_issued.v1"

    personal_id: PersonalId
    card_number: HealthInsuranceNumber
    change_kind: Literal["issued", "renewed", "reissued", "changed", "terminated"]
    valid_from: date
    valid_to: date | None = Field(default=None, description="None for a card without end date")
    primary_care_facility_code: FacilityCode = Field(
        description="Facility of first registration (nơi đăng ký khám chữa bệnh ban đầu)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_to is not None and self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


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
