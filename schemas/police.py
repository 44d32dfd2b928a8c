"""Population events of the city police (Công an TP, Đề án 06), and the queries it answers.

A type lives under the agency that owns and answers it: the verification requests are published
by land or education but are ``vn.hcm.police.*`` types, generic police queries whose answers say
yes or no per field and nothing more.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from schemas.base import EventModel, RequestModel, ResponseModel
from schemas.common import Address, PersonalId, PersonName, Sex, check_personal_id_matches

ResidenceKind = Literal["permanent", "temporary"]


class ResidentRegistered(EventModel):
    """A resident's permanent residence was registered (đăng ký thường trú)."""

    event_type: ClassVar[str] = "vn.hcm.police.resident_registered.v1"

    personal_id: PersonalId
    full_name: PersonName
    date_of_birth: date
    sex: Sex
    nationality: str = Field(default="VN", pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")
    permanent_address: Address
    registered_on: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_personal_id_matches(self.personal_id, self.date_of_birth, self.sex)
        if self.registered_on < self.date_of_birth:
            raise ValueError("registered_on is before date_of_birth")
        return self


class ResidentAddressChanged(EventModel):
    """A resident's permanent or temporary residence changed (thay đổi nơi cư trú)."""

    event_type: ClassVar[str] = "vn.hcm.police.resident_address_changed.v1"

    personal_id: PersonalId
    full_name: PersonName
    residence_kind: ResidenceKind
    previous_address: Address | None = None
    new_address: Address
    effective_on: date


class ResidentDeceased(EventModel):
    """A resident died and was removed from the residence register (xóa đăng ký thường trú)."""

    event_type: ClassVar[str] = "vn.hcm.police.resident_deceased.v1"

    personal_id: PersonalId
    full_name: PersonName
    date_of_death: date
    deregistered_on: date = Field(description="Date the residence registration was closed")
    death_certificate_number: (
        Annotated[str, StringConstraints(pattern=r"^[0-9A-Z][0-9A-Z/.\-]{0,29}$")] | None
    ) = Field(default=None, description="Number of the health facility's death certificate")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.deregistered_on < self.date_of_death:
            raise ValueError("deregistered_on is before date_of_death")
        return self


class IdentityVerificationRequested(RequestModel):
    """A question to the police: is this person registered with this name and date of birth.

    A generic police query (land asks it about owners, education about pupils' parents); the
    answer, ``IdentityVerified``, says yes or no per field and never returns register data.
    """

    event_type: ClassVar[str] = "vn.hcm.police.identity_verification_requested.v1"
    response_type: ClassVar[str] = "vn.hcm.police.identity_verified.v1"

    personal_id: PersonalId
    full_name: PersonName
    date_of_birth: date


class IdentityVerified(ResponseModel):
    """The police's answer to an identity verification: yes or no per field, nothing more.

    An id that the register does not hold answers no to every field, exactly like an id whose
    name and date of birth both differ, so the answer does not reveal whether an id exists.
    """

    event_type: ClassVar[str] = "vn.hcm.police.identity_verified.v1"
    request_type: ClassVar[str] = IdentityVerificationRequested.event_type

    personal_id: PersonalId
    match: bool = Field(description="True when every field asked about matches")
    full_name_matches: bool
    date_of_birth_matches: bool

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.match != (self.full_name_matches and self.date_of_birth_matches):
            raise ValueError("match must be true exactly when every field matches")
        return self


class ResidenceVerificationRequested(RequestModel):
    """A question to the police: does this person reside at this address (school admission)."""

    event_type: ClassVar[str] = "vn.hcm.police.residence_verification_requested.v1"
    response_type: ClassVar[str] = "vn.hcm.police.residence_verified.v1"

    personal_id: PersonalId
    claimed_address: Address


class ResidenceVerified(ResponseModel):
    """The police's answer to a residence verification: yes or no, and the kind of residence.

    ``residence_kind`` is given only on a match; a mismatch tells nothing about where the
    person does live, nor whether the id is known.
    """

    event_type: ClassVar[str] = "vn.hcm.police.residence_verified.v1"
    request_type: ClassVar[str] = ResidenceVerificationRequested.event_type

    personal_id: PersonalId
    match: bool
    residence_kind: ResidenceKind | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.match != (self.residence_kind is not None):
            raise ValueError("residence_kind is given exactly when match is true")
        return self
