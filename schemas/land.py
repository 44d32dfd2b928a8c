"""Events of the land registry (Sở Tài nguyên và Môi trường, Văn phòng đăng ký đất đai)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, ClassVar, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from schemas.base import EventModel
from schemas.common import LandCertificateSerial, Parcel, PersonalId, PersonName

AreaM2 = Annotated[
    float,
    Field(
        gt=0,
        le=100_000_000,
        description="Area in square metres, to 0.1 m² as measured on the cadastral map",
    ),
]

UsePurposeCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}(\+[A-Z]{3})*$"),
    Field(
        description=(
            "Land-use purpose code(s) of the cadastral map legend, e.g. 'ODT' (urban residential)"
            ", 'ONT' (rural residential), 'CLN' (perennial crops); mixed use joins codes by '+'"
        )
    ),
]


def _check_tenths(area: float) -> None:
    if round(area, 1) != area:
        raise ValueError("area_m2 has more than one decimal")


class LandUseRightCertificateIssued(EventModel):
    """A land-use-right certificate (Giấy chứng nhận quyền sử dụng đất) was issued to an owner."""

    event_type: ClassVar[str] = "vn.hcm.land.land_use_right_certificate_issued.v1"

    personal_id: PersonalId = Field(description="The owner (người sử dụng đất)")
    full_name: PersonName
    certificate_serial: LandCertificateSerial
    parcel: Parcel
    area_m2: AreaM2
    use_purpose_code: UsePurposeCode
    issued_on: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_tenths(self.area_m2)
        return self


class LandTransferRegistered(EventModel):
    """A transfer of a land-use right was registered (đăng ký biến động).

    The subject is the transferee (``personal_id``, the new owner): the event's consequence,
    the right held from now on and the new certificate, is theirs, and later events about the
    parcel's owner (certificates, mortgages) are about them, so they share the transferee's
    partition and order. The transferor appears as ``transferor_personal_id``; an agency that
    tracks people who gave up a right finds them there.
    """

    event_type: ClassVar[str] = "vn.hcm.land.land_transfer_registered.v1"

    personal_id: PersonalId = Field(description="The transferee, who holds the right from now on")
    full_name: PersonName
    transferor_personal_id: PersonalId = Field(description="The previous holder of the right")
    transfer_kind: Literal["sale", "gift", "inheritance", "exchange"] = Field(
        description="chuyển nhượng, tặng cho, thừa kế, chuyển đổi"
    )
    parcel: Parcel
    area_m2: AreaM2
    certificate_serial: LandCertificateSerial | None = Field(
        default=None, description="Serial of the certificate issued to the transferee, if any"
    )
    registered_on: date

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.transferor_personal_id == self.personal_id:
            raise ValueError("transferor_personal_id is the transferee's personal_id")
        _check_tenths(self.area_m2)
        return self
