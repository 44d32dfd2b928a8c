"""The schema registry: type lookup and projected views."""

from __future__ import annotations

import unicodedata
from typing import ClassVar

import pytest
from pydantic import ValidationError

from schemas.base import EventModel, RequestModel, ResponseModel
from schemas.health import VaccinationRecorded
from schemas.police import ResidentAddressChanged, ResidentRegistered
from schemas.registry import REGISTRY, SchemaRegistry
from tests.schemas.factories import make_resident

REGISTERED = "vn.hcm.police.resident_registered.v1"
LAND_GRANT = frozenset({"personal_id", "full_name"})


def test_model_for_known_type() -> None:
    """Each registered type maps to its model."""
    assert REGISTRY.model_for(REGISTERED) is ResidentRegistered
    assert REGISTRY.model_for(ResidentAddressChanged.event_type) is ResidentAddressChanged
    assert REGISTRY.model_for(VaccinationRecorded.event_type) is VaccinationRecorded


@pytest.mark.parametrize(
    "event_type", ["vn.hcm.police.resident_registered.v2", "vn.hcm.fire.alarm.v1", ""]
)
def test_model_for_unknown_type_is_none(event_type: str) -> None:
    """An unregistered type, including another major version, has no model."""
    assert REGISTRY.model_for(event_type) is None


def test_types_are_sorted() -> None:
    """types() lists every registered type in sorted order."""
    assert REGISTRY.types() == [
        "vn.hcm.education.diploma_issued.v1",
        "vn.hcm.education.student_enrolled.v1",
        "vn.hcm.health.birth_certificate_issued.v1",
        "vn.hcm.health.death_certificate_issued.v1",
        "vn.hcm.health.health_insurance_card_issued.v1",
        "vn.hcm.health.vaccination_recorded.v1",
        "vn.hcm.land.land_transfer_registered.v1",
        "vn.hcm.land.land_use_right_certificate_issued.v1",
        "vn.hcm.police.identity_verification_requested.v1",
        "vn.hcm.police.identity_verified.v1",
        "vn.hcm.police.residence_verification_requested.v1",
        "vn.hcm.police.residence_verified.v1",
        "vn.hcm.police.resident_address_changed.v1",
        "vn.hcm.police.resident_deceased.v1",
        "vn.hcm.police.resident_registered.v1",
    ]
    assert SchemaRegistry([VaccinationRecorded, ResidentRegistered]).types() == sorted(
        [VaccinationRecorded.event_type, REGISTERED]
    )


def test_duplicate_registration_raises() -> None:
    """Registering two models for one type raises, naming the type."""

    class Impostor(EventModel):
        event_type: ClassVar[str] = REGISTERED

    with pytest.raises(ValueError, match="registered twice"):
        SchemaRegistry([ResidentRegistered, Impostor])
    with pytest.raises(ValueError, match="registered twice"):
        SchemaRegistry([ResidentRegistered, ResidentRegistered])


def test_projection_holds_only_granted_fields() -> None:
    """A projected view has exactly the granted fields."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    assert set(view.model_fields) == LAND_GRANT


def test_projection_validates_the_granted_part_of_an_event() -> None:
    """The granted fields of a valid event validate as the projected view."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    data = make_resident().model_dump(include=set(LAND_GRANT))
    assert view.model_validate(data).model_dump() == data


def test_projection_still_checks_the_personal_id() -> None:
    """A bad personal id fails in the projection as in the full model."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    with pytest.raises(ValidationError) as error:
        view.model_validate({"personal_id": "099190012345", "full_name": "Trần Văn Đức"})
    assert [e["loc"] for e in error.value.errors()] == [("personal_id",)]


def test_projection_still_checks_names_and_normalises_them() -> None:
    """A name with digits fails in the projection, and an NFD name comes out NFC."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    with pytest.raises(ValidationError) as error:
        view.model_validate({"personal_id": "079190012345", "full_name": "Trần Văn 2"})
    assert [e["loc"] for e in error.value.errors()] == [("full_name",)]
    nfd = unicodedata.normalize("NFD", "Trần Văn Đức")
    projected = view.model_validate({"personal_id": "079190012345", "full_name": nfd})
    assert projected.model_dump()["full_name"] == "Trần Văn Đức"


def test_projection_refuses_withheld_fields() -> None:
    """A field outside the grant is refused, so withheld data cannot slip through a view."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    data = make_resident().model_dump(include={"personal_id", "full_name", "date_of_birth"})
    with pytest.raises(ValidationError) as error:
        view.model_validate(data)
    assert [(e["loc"], e["type"]) for e in error.value.errors()] == [
        (("date_of_birth",), "extra_forbidden")
    ]


def test_projection_requires_granted_fields() -> None:
    """A granted field that is missing is refused, not read as empty."""
    view = REGISTRY.projection(REGISTERED, LAND_GRANT)
    with pytest.raises(ValidationError) as error:
        view.model_validate({"personal_id": "079190012345"})
    assert [e["loc"] for e in error.value.errors()] == [("full_name",)]


def test_projection_of_nested_model_validates_it() -> None:
    """A granted address is validated as an address in the view."""
    view = REGISTRY.projection(REGISTERED, frozenset({"permanent_address"}))
    address = make_resident().model_dump()["permanent_address"]
    assert view.model_validate({"permanent_address": address}).model_dump() == {
        "permanent_address": address
    }
    with pytest.raises(ValidationError):
        view.model_validate({"permanent_address": {**address, "province_code": "079"}})


def test_unknown_projection_field_raises() -> None:
    """Projecting a field the type does not have raises, naming the field."""
    with pytest.raises(ValueError, match="blood_type"):
        REGISTRY.projection(REGISTERED, frozenset({"personal_id", "blood_type"}))


@pytest.mark.parametrize("event_type", REGISTRY.types())
def test_every_type_is_named_after_its_owner_and_keyed_by_a_person(event_type: str) -> None:
    """Each type is vn.hcm.<agency>.<event>.v1 and has the personal_id it is keyed by."""
    model = REGISTRY.model_for(event_type)
    assert model is not None
    agency = event_type.split(".")[2]
    assert agency == model.__module__.removeprefix("schemas.")
    assert event_type.endswith(".v1")
    assert model.subject_field == "personal_id"
    assert "personal_id" in model.model_fields
    assert model.model_fields["personal_id"].is_required()


@pytest.mark.parametrize("event_type", REGISTRY.types())
def test_requests_and_responses_point_at_each_other(event_type: str) -> None:
    """A request's response type is registered and names it back as its request type."""
    model = REGISTRY.model_for(event_type)
    if not issubclass(model, RequestModel):
        return
    response = REGISTRY.model_for(model.response_type)
    assert response is not None
    assert issubclass(response, ResponseModel)
    assert response.request_type == event_type
