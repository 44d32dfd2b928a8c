"""Events of the land registry: certificates and transfers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.land import LandTransferRegistered, LandUseRightCertificateIssued
from tests.schemas import strategies
from tests.schemas.factories import PARCEL

CERTIFICATE = {
    "personal_id": "079085001234",
    "full_name": "Đặng Quốc Việt",
    "certificate_serial": "DA 123456",
    "parcel": PARCEL,
    "area_m2": 72.5,
    "use_purpose_code": "ODT",
    "issued_on": date(2026, 6, 1),
}
TRANSFER = {
    "personal_id": "079190012345",
    "full_name": "Nguyễn Thị Minh Khai",
    "transferor_personal_id": "079085001234",
    "transfer_kind": "sale",
    "parcel": PARCEL,
    "area_m2": 72.5,
    "certificate_serial": "DA 654321",
    "registered_on": date(2026, 11, 2),
}


def test_certificate_validates_with_the_owner_as_subject() -> None:
    """A certificate for a parcel in Phường Linh Xuân is keyed by its owner."""
    event = LandUseRightCertificateIssued.model_validate(CERTIFICATE)
    assert event.subject_id() == "079085001234"
    assert event.parcel.commune_code == "26794"


@pytest.mark.parametrize(
    ("loc", "value"),
    [
        (("certificate_serial",), "DA123456"),
        (("parcel", "map_sheet_number"), {**PARCEL, "map_sheet_number": 0}),
        (("parcel", "commune_code"), {**PARCEL, "commune_code": "26800"}),
        (("area_m2",), 0),
        (("area_m2",), -5.0),
        (("use_purpose_code",), "odt"),
        (("use_purpose_code",), "O"),
    ],
)
def test_certificate_field_errors_name_the_field(loc: tuple[str, ...], value: object) -> None:
    """A bad serial, parcel part, area or purpose code is reported under its path."""
    with pytest.raises(ValidationError) as error:
        LandUseRightCertificateIssued.model_validate({**CERTIFICATE, loc[0]: value})
    assert [e["loc"] for e in error.value.errors()] == [loc]


def test_mixed_use_purpose_validates() -> None:
    """Residential land with perennial crops, 'ODT+CLN', is a purpose code."""
    data = {**CERTIFICATE, "use_purpose_code": "ODT+CLN"}
    assert LandUseRightCertificateIssued.model_validate(data).use_purpose_code == "ODT+CLN"


def test_area_finer_than_a_tenth_is_refused() -> None:
    """Areas are measured to 0.1 m²; 72.55 m² is refused."""
    with pytest.raises(ValidationError, match="more than one decimal"):
        LandUseRightCertificateIssued.model_validate({**CERTIFICATE, "area_m2": 72.55})


@given(strategies.land_serials, st.integers(min_value=1, max_value=10**7))
def test_any_serial_and_area_round_trip(serial: str, tenths: int) -> None:
    """Any valid serial and area in tenths of a m² survive a JSON round trip."""
    event = LandUseRightCertificateIssued.model_validate(
        {**CERTIFICATE, "certificate_serial": serial, "area_m2": tenths / 10}
    )
    assert LandUseRightCertificateIssued.model_validate_json(event.model_dump_json()) == event


def test_transfer_is_keyed_by_the_transferee() -> None:
    """A sale from Đặng Quốc Việt to Nguyễn Thị Minh Khai is about the new holder."""
    event = LandTransferRegistered.model_validate(TRANSFER)
    assert event.subject_id() == "079190012345"
    assert event.transferor_personal_id == "079085001234"


def test_transfer_to_oneself_is_refused() -> None:
    """A transfer whose transferor is the transferee is refused."""
    with pytest.raises(ValidationError, match="transferor_personal_id is the transferee"):
        LandTransferRegistered.model_validate(
            {**TRANSFER, "transferor_personal_id": TRANSFER["personal_id"]}
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [("transfer_kind", "theft"), ("transferor_personal_id", "003085001234")],
)
def test_transfer_field_errors_name_the_field(field: str, value: str) -> None:
    """An unknown transfer kind or a bad transferor id is reported under its field."""
    with pytest.raises(ValidationError) as error:
        LandTransferRegistered.model_validate({**TRANSFER, field: value})
    assert [e["loc"] for e in error.value.errors()] == [(field,)]
