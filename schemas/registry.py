"""The registry from CloudEvents ``type`` (with major version) to the model that validates it."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, create_model

from schemas.base import EventModel, Record
from schemas.education import DiplomaIssued, StudentEnrolled
from schemas.health import (
    BirthCertificateIssued,
    DeathCertificateIssued,
    HealthInsuranceCardIssued,
    VaccinationRecorded,
)
from schemas.land import LandTransferRegistered, LandUseRightCertificateIssued
from schemas.police import (
    IdentityVerificationRequested,
    IdentityVerified,
    ResidenceVerificationRequested,
    ResidenceVerified,
    ResidentAddressChanged,
    ResidentDeceased,
    ResidentRegistered,
)


class SchemaRegistry:
    """Maps each event type to its model, and builds the models of partial (projected) views."""

    def __init__(self, models: Iterable[type[EventModel]]) -> None:
        self._models: dict[str, type[EventModel]] = {}
        for model in models:
            if model.event_type in self._models:
                raise ValueError(f"event type {model.event_type} is registered twice")
            self._models[model.event_type] = model

    def model_for(self, event_type: str) -> type[EventModel] | None:
        """The model of ``event_type``, or ``None`` when it is not registered."""
        return self._models.get(event_type)

    def types(self) -> list[str]:
        """Every registered type, sorted."""
        return sorted(self._models)

    def projection(self, event_type: str, fields: frozenset[str]) -> type[BaseModel]:
        """A model holding only ``fields`` of ``event_type``, each validated as in the full model.

        A recipient that receives a minimised event gets exactly the fields its policy grants;
        the others are absent, not ``None``, so no code can mistake "withheld" for "empty".
        """
        return _projection(self._models[event_type], fields)


@lru_cache(maxsize=256)
def _projection(model: type[EventModel], fields: frozenset[str]) -> type[BaseModel]:
    unknown = fields - model.model_fields.keys()
    if unknown:
        raise ValueError(f"{model.event_type} has no fields {sorted(unknown)}")
    definitions: dict[str, Any] = {
        name: (info.annotation, info) for name, info in model.model_fields.items() if name in fields
    }
    name = f"{model.__name__}View"
    return create_model(
        name, __base__=Record, __doc__=f"Projected view of {model.event_type}.", **definitions
    )


REGISTRY = SchemaRegistry(
    [
        ResidentRegistered,
        ResidentAddressChanged,
        ResidentDeceased,
        IdentityVerificationRequested,
        IdentityVerified,
        ResidenceVerificationRequested,
        ResidenceVerified,
        BirthCertificateIssued,
        DeathCertificateIssued,
        HealthInsuranceCardIssued,
        VaccinationRecorded,
        StudentEnrolled,
        DiplomaIssued,
        LandUseRightCertificateIssued,
        LandTransferRegistered,
    ]
)
