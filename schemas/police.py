"""Population events of the city police (Công an TP, Đề án 06 population data)."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from schemas.base import EventModel
from schemas.common import Address, PersonalId, PersonName, Sex, check_personal_id_matches


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
    residence_kind: Literal["permanent", "temporary"]
    previous_address: Address | None = None
    new_address: Address
    effective_on: date
