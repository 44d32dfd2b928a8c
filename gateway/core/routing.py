"""Who receives a verified event: the policy's grants for an event, a request or a response.

An event goes to every recipient its route names. A request goes to its one answerer, for the
requester's purpose, and is remembered in the pending-request table (:mod:`gateway.core.pending`);
a response goes only to the agency that asked, and closes that entry. Each function raises
:class:`Rejection` when the policy or the table refuses.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.clock import parse_rfc3339
from gateway.core.envelope import Envelope
from gateway.core.pending import ANSWERED, OPEN, TIMED_OUT, Pending, PendingRequests
from gateway.core.policy import Grant, Policy, RequesterGrant
from gateway.core.profile import CORRELATION_ID, DEADLINE
from gateway.core.replay import Position
from gateway.errors import Rejection
from gateway.reasons import ReasonCode
from schemas.base import EventModel, RequestModel, ResponseModel


def check_exchange_attributes(env: Envelope, model: type[EventModel]) -> None:
    """``xgwdeadline`` belongs on requests only, ``correlationid`` on responses only."""
    if DEADLINE in env.attributes and not issubclass(model, RequestModel):
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, f"{DEADLINE} is only for requests")
    if CORRELATION_ID in env.attributes and not issubclass(model, ResponseModel):
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, f"{CORRELATION_ID} is only for responses")


def event_grants(policy: Policy, env: Envelope) -> tuple[Grant, ...]:
    """An event goes to every recipient of its route, if its source may publish it."""
    route = policy.route_for(env.type)
    if route is None or not route.recipients:
        raise Rejection(ReasonCode.NO_RECIPIENTS, f"the policy routes {env.type!r} to nobody")
    if route.publisher != env.agency:
        raise Rejection(
            ReasonCode.UNAUTHORISED_PUBLISHER, f"{env.agency!r} may not publish {env.type!r}"
        )
    return route.recipients


def _deadline(env: Envelope) -> datetime:
    value = env.attributes.get(DEADLINE)
    if not isinstance(value, str) or not value:
        raise Rejection(ReasonCode.MISSING_ATTRIBUTE, f"attribute {DEADLINE!r} is missing")
    try:
        return parse_rfc3339(value)
    except ValueError as exc:
        raise Rejection(
            ReasonCode.BAD_DEADLINE, "the deadline is not an RFC 3339 date-time with a UTC offset"
        ) from exc


def _grant_to(agency: str, grant: RequesterGrant, fields: frozenset[str]) -> Grant:
    """``agency`` receives ``fields`` for the requester's purpose and legal basis."""
    return Grant(agency=agency, purpose=grant.purpose, legal_basis=grant.legal_basis, fields=fields)


def request_grants(
    policy: Policy,
    pending: PendingRequests,
    env: Envelope,
    position: Position,
    record_sha256: str,
    now: datetime,
    *,
    redelivery: bool,
) -> tuple[Grant, ...]:
    """A request goes to its one answerer, for the requester's purpose, and is remembered."""
    rule = policy.request_rule(env.type)
    if rule is None:
        raise Rejection(ReasonCode.NO_RECIPIENTS, f"the policy lets nobody answer {env.type!r}")
    grant = rule.requester(env.agency)
    if grant is None:
        raise Rejection(
            ReasonCode.UNAUTHORISED_REQUESTER, f"{env.agency!r} may not ask {env.type!r}"
        )
    deadline = _deadline(env)
    if deadline <= now and not redelivery:
        raise Rejection(ReasonCode.BAD_DEADLINE, "the deadline has already passed")
    longest = timedelta(seconds=rule.max_timeout_seconds)
    if deadline - env.time > longest:
        raise Rejection(
            ReasonCode.BAD_DEADLINE,
            f"the deadline is more than {rule.max_timeout_seconds:g}s after the request time",
        )
    if deadline - now > longest:
        # The sender's time may run ahead of the gateway's by the allowed skew: the bound also
        # holds from the moment the gateway received the request.
        raise Rejection(
            ReasonCode.BAD_DEADLINE,
            f"the deadline is more than {rule.max_timeout_seconds:g}s after the gateway received "
            "the request",
        )
    known = pending.get(position.partition, env.id)
    if known is not None and (known.requester, known.offset) != (env.agency, position.offset):
        raise Rejection(ReasonCode.DUPLICATE_ID, "a request with this id is already pending")
    if known is None:
        pending.put(
            position.partition,
            env.id,
            Pending(
                requester=env.agency,
                request_type=env.type,
                subject=env.subject,
                deadline=deadline.timestamp(),
                offset=position.offset,
                record_sha256=record_sha256,
            ),
        )
    return (_grant_to(rule.answerer, grant, grant.fields),)


def response_grants(
    policy: Policy,
    pending: PendingRequests,
    env: Envelope,
    model: type[ResponseModel],
    partition: int,
    now: datetime,
) -> tuple[Grant, ...]:
    """A response goes only to the agency that asked, and closes the pending request."""
    rule = policy.request_rule(model.request_type)
    if rule is None:
        raise Rejection(
            ReasonCode.NO_RECIPIENTS, f"the policy lets nobody answer {model.request_type!r}"
        )
    if rule.answerer != env.agency:
        raise Rejection(
            ReasonCode.WRONG_RESPONDER,
            f"{model.request_type!r} is answered by {rule.answerer!r}",
        )
    correlation = env.attributes.get(CORRELATION_ID)
    if not isinstance(correlation, str) or not correlation:
        raise Rejection(ReasonCode.MISSING_ATTRIBUTE, f"attribute {CORRELATION_ID!r} is missing")
    request = pending.get(partition, correlation)
    if request is None or request.request_type != model.request_type:
        raise Rejection(ReasonCode.UNKNOWN_REQUEST, "no pending request has this correlationid")
    if request.subject != env.subject:
        raise Rejection(ReasonCode.SUBJECT_MISMATCH, "the request was about another subject")
    # Answered by this very response: a redelivery after a crash (its replay entry may not
    # have reached the changelog; a true duplicate was refused before routing).
    redelivered = request.answered_by == env.id
    if request.status == TIMED_OUT or (
        request.status == OPEN and request.deadline < now.timestamp()
    ):
        raise Rejection(ReasonCode.REQUEST_EXPIRED, "the request's deadline has passed")
    if request.status == ANSWERED and not redelivered:
        raise Rejection(ReasonCode.UNKNOWN_REQUEST, "the request was already answered")
    grant = rule.requester(request.requester)
    if grant is None:  # the policy changed since the request was delivered
        raise Rejection(
            ReasonCode.UNAUTHORISED_REQUESTER,
            f"{request.requester!r} may no longer ask {model.request_type!r}",
        )
    pending.put(partition, correlation, request.answered(env.id))
    return (_grant_to(request.requester, grant, grant.response_fields),)
