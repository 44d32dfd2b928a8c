"""Who may publish each event type, who receives it, for what purpose, and which fields.

The policy is a reviewed TOML file (default: ``gateway/data/policy.toml``) with two kinds of
rule: ``[[routes]]`` for events (one publisher, any number of recipients) and ``[[requests]]``
for questions (any number of requesters, each with a purpose, and exactly one answerer, whose
response goes back to the requester alone). It is validated at load against the schema
registry, so a rule that names an unknown type, an unknown field or an unknown agency is refused
before a worker starts. A policy change takes effect with a rolling restart of the workers.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from gateway.errors import ConfigError
from schemas.base import RequestModel, ResponseModel, describe_errors
from schemas.registry import SchemaRegistry

AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,31}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=300)]


class Grant(BaseModel):
    """One recipient of a type: the purpose, its legal basis, and the fields it may see."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agency: AgencyId
    purpose: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{2,63}$")]
    legal_basis: Text
    fields: frozenset[str] = Field(min_length=1)


class Route(BaseModel):
    """The rule for one event type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Text
    publisher: AgencyId
    recipients: tuple[Grant, ...] = ()

    @model_validator(mode="after")
    def _distinct_recipients(self) -> Route:
        agencies = [g.agency for g in self.recipients]
        if len(agencies) != len(set(agencies)):
            raise ValueError("an agency is listed twice as recipient")
        if self.publisher in agencies:
            raise ValueError("the publisher cannot be a recipient of its own events")
        return self


class RequesterGrant(Grant):
    """An agency that may ask: purpose, request fields for the answerer, response fields back."""

    response_fields: frozenset[str] = Field(min_length=1)


class RequestRoute(BaseModel):
    """The rule for one request type: who may ask, who answers, how long an answer may take."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Text
    answerer: AgencyId
    max_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    requesters: tuple[RequesterGrant, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct_requesters(self) -> RequestRoute:
        agencies = [g.agency for g in self.requesters]
        if len(agencies) != len(set(agencies)):
            raise ValueError("an agency is listed twice as requester")
        if self.answerer in agencies:
            raise ValueError("the answerer cannot ask itself")
        return self

    def requester(self, agency: str) -> RequesterGrant | None:
        """The grant of ``agency`` as requester, or ``None`` when it may not ask."""
        return next((g for g in self.requesters if g.agency == agency), None)


class Policy(BaseModel):
    """All routes, by event type, and all request rules, by request type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agencies: tuple[AgencyId, ...] = Field(min_length=1)
    routes: tuple[Route, ...] = ()
    requests: tuple[RequestRoute, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        reserved = {"gateway", "root"} & set(self.agencies)
        if reserved:
            raise ValueError(f"agency ids {sorted(reserved)} are reserved for the exchange itself")
        types = [r.type for r in self.routes] + [r.type for r in self.requests]
        if len(types) != len(set(types)):
            raise ValueError("a type has more than one route or request rule")
        known = set(self.agencies)
        for route in self.routes:
            named = {route.publisher, *(g.agency for g in route.recipients)}
            if named - known:
                raise ValueError(
                    f"route {route.type} names unknown agencies {sorted(named - known)}"
                )
        for rule in self.requests:
            named = {rule.answerer, *(g.agency for g in rule.requesters)}
            if named - known:
                raise ValueError(
                    f"request {rule.type} names unknown agencies {sorted(named - known)}"
                )
        return self

    def request_rule(self, request_type: str) -> RequestRoute | None:
        """The rule of ``request_type``, or ``None`` when nobody may ask it."""
        return self._requests_by_type.get(request_type)

    @cached_property
    def _requests_by_type(self) -> dict[str, RequestRoute]:
        return {r.type: r for r in self.requests}

    def route_for(self, event_type: str) -> Route | None:
        """The route of ``event_type``, or ``None`` when the policy has none."""
        return self._by_type.get(event_type)

    @cached_property
    def _by_type(self) -> dict[str, Route]:
        return {r.type: r for r in self.routes}

    def check_against(self, registry: SchemaRegistry) -> None:
        """Raise :class:`ConfigError` when a rule names an unregistered type or field."""
        for route in self.routes:
            model = registry.model_for(route.type)
            if model is None:
                raise ConfigError(f"route for unregistered type {route.type}")
            if issubclass(model, RequestModel | ResponseModel):
                raise ConfigError(
                    f"{route.type} is a request or response: give it a [[requests]] rule"
                )
            for grant in route.recipients:
                _check_fields(route.type, grant.agency, grant.fields, model.model_fields)
        for rule in self.requests:
            model = registry.model_for(rule.type)
            if model is None or not issubclass(model, RequestModel):
                raise ConfigError(f"[[requests]] rule for {rule.type}, which is not a request type")
            response = registry.model_for(model.response_type)
            if response is None:
                raise ConfigError(f"{rule.type} answers with unregistered {model.response_type}")
            for grant in rule.requesters:
                _check_fields(rule.type, grant.agency, grant.fields, model.model_fields)
                _check_fields(
                    response.event_type, grant.agency, grant.response_fields, response.model_fields
                )


def _check_fields(type_: str, agency: str, granted: frozenset[str], known: Iterable[str]) -> None:
    unknown = granted - set(known)
    if unknown:
        raise ConfigError(f"{type_} grants {agency} unknown fields {sorted(unknown)}")


def load_policy(path: Path, registry: SchemaRegistry) -> Policy:
    """Read, validate and cross-check a policy file; errors name the file and the field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"policy file {path} is not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from exc
    try:
        policy = Policy.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"policy file {path}: {describe_errors(exc, limit=5)}") from exc
    try:
        policy.check_against(registry)
    except ConfigError as exc:
        raise ConfigError(f"policy file {path}: {exc}") from exc
    return policy
