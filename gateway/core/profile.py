"""The exchange's CloudEvents 1.0 profile (structured JSON mode): its attribute names and bounds.

An event on the wire is one JSON object. Besides the CloudEvents attributes it carries:

    data            the signed form: {"_sd": [sorted digests], "_sd_alg": "sha-256"}
    xgwdisclosures  the disclosures (RFC 9901 encoding), joined by "~"
    xgwsig          the origin agency's detached JWS over the signed form
    xgwdeadline     on a request: when an answer is no longer useful (RFC 3339, signed)
    correlationid   on a response: the id of the request it answers (signed)
    xgwrecipient, xgwpurpose, xgwlegalbasis, xgwsignercert, xgwstamp, xgwstampproof
                    added by the gateway on delivery; xgwstamp is its detached JWS over the
                    root of an RFC 9162 hash tree whose leaves are the events it stamped
                    together (without their stamp attributes), and xgwstampproof the event's
                    leaf index, the tree size and its audit path (see docs/envelope.md)

The signed form is every attribute except the unsigned ones above, so the origin signature
still verifies after the gateway withholds disclosures and adds its own attributes.
:mod:`gateway.core.envelope` parses, seals and projects events, :mod:`gateway.core.stamp`
stamps them; both share what is here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.errors import Rejection
from gateway.reasons import ReasonCode
from gateway.wire.canonical import MAX_JSON_DEPTH, CanonicalisationError, canonical_bytes

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
SIGNATURE = "xgwsig"
DISCLOSURES = "xgwdisclosures"
STAMP = "xgwstamp"
STAMP_PROOF = "xgwstampproof"
RECIPIENT = "xgwrecipient"
PURPOSE = "xgwpurpose"
LEGAL_BASIS = "xgwlegalbasis"
SIGNER_CERTIFICATE = "xgwsignercert"
# Signed attributes of request/reply: a request's deadline, and the request id a response
# answers (the name of the CloudEvents correlation extension).
DEADLINE = "xgwdeadline"
CORRELATION_ID = "correlationid"
STAMP_ATTRIBUTES = frozenset({STAMP, STAMP_PROOF})
GATEWAY_ATTRIBUTES = STAMP_ATTRIBUTES | {RECIPIENT, PURPOSE, LEGAL_BASIS, SIGNER_CERTIFICATE}
UNSIGNED_ATTRIBUTES = frozenset({SIGNATURE, DISCLOSURES}) | GATEWAY_ATTRIBUTES
# The CloudEvents 1.0 attributes of this profile. ``dataschema`` is not among them: the type
# names the schema (with its major version), and a second, free-text pointer would be one
# more place for a sender to put what the policy never granted.
CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"}
)
# Every attribute an agency may publish; any other is refused (``unknown_attribute``), so
# nothing reaches a recipient that the profile does not define and the policy does not grant.
PUBLISHED_ATTRIBUTES = CORE_ATTRIBUTES | {SIGNATURE, DISCLOSURES, DEADLINE, CORRELATION_ID}
# Every attribute of a delivered event: the published ones and the gateway's.
DELIVERED_ATTRIBUTES = PUBLISHED_ATTRIBUTES | GATEWAY_ATTRIBUTES


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds checked before anything expensive is done with a record."""

    max_depth: int = MAX_JSON_DEPTH
    max_string_chars: int = 16_384


DEFAULT_LIMITS = Limits()


def canonical_or_reject(value: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of a received event; one that has none is a malformed envelope."""
    try:
        return canonical_bytes(value)
    except CanonicalisationError as exc:
        raise Rejection(ReasonCode.MALFORMED_ENVELOPE, "event cannot be canonicalised") from exc
