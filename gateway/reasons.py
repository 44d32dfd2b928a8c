"""The stable reason codes of every rejection.

These strings are an interface: receipts, dead-letter headers, the ``reason`` metric label, the
audit trail and agency integrations all use them. Add codes; never rename or reuse one.
``docs/reason-codes.md`` is generated from this table (``tests`` check they agree).
"""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    """Why the gateway refused a record."""

    RECORD_TOO_LARGE = "record_too_large"
    MALFORMED_ENVELOPE = "malformed_envelope"
    SOURCE_TOPIC_MISMATCH = "source_topic_mismatch"
    UNKNOWN_SIGNER = "unknown_signer"
    SIGNER_AGENCY_MISMATCH = "signer_agency_mismatch"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED_DISCLOSURE = "malformed_disclosure"
    DISCLOSURE_MISMATCH = "disclosure_mismatch"
    DUPLICATE_DISCLOSURE = "duplicate_disclosure"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHORISED_PUBLISHER = "unauthorised_publisher"
    SCHEMA_VIOLATION = "schema_violation"
    DUPLICATE_ID = "duplicate_id"
    NO_RECIPIENTS = "no_recipients"

    @property
    def description(self) -> str:
        """One sentence for the documentation table and for receipts."""
        return _DESCRIPTIONS[self]


def markdown_table() -> str:
    """The reason-code table of ``docs/reason-codes.md``."""
    rows = [f"| `{code.value}` | {code.description} |" for code in ReasonCode]
    return "\n".join(["| reason code | meaning |", "|---|---|", *rows]) + "\n"


_DESCRIPTIONS: dict[ReasonCode, str] = {
    ReasonCode.RECORD_TOO_LARGE: "The record is larger than the configured maximum size.",
    ReasonCode.MALFORMED_ENVELOPE: (
        "The bytes are not a CloudEvents 1.0 structured JSON event of the gateway's profile "
        "(not JSON, missing or mistyped attribute, reserved attribute set by the sender)."
    ),
    ReasonCode.SOURCE_TOPIC_MISMATCH: (
        "The event's source names another agency than the ingress topic it was written to."
    ),
    ReasonCode.UNKNOWN_SIGNER: "The signature's key id names no key in the trust store.",
    ReasonCode.SIGNER_AGENCY_MISMATCH: (
        "The signing key belongs to another agency than the event's source."
    ),
    ReasonCode.BAD_SIGNATURE: (
        "The origin signature does not verify over the canonical signed form of the event."
    ),
    ReasonCode.MALFORMED_DISCLOSURE: "A disclosure is not a valid [salt, name, value] array.",
    ReasonCode.DISCLOSURE_MISMATCH: "A disclosure's digest is not among the signed digests.",
    ReasonCode.DUPLICATE_DISCLOSURE: "Two disclosures carry the same digest or the same field.",
    ReasonCode.UNKNOWN_TYPE: "The event type (with its major version) is not registered.",
    ReasonCode.UNAUTHORISED_PUBLISHER: "The policy does not let this agency publish this type.",
    ReasonCode.SCHEMA_VIOLATION: "The disclosed data does not validate against the type's schema.",
    ReasonCode.DUPLICATE_ID: "An event with the same source and id was already accepted.",
    ReasonCode.NO_RECIPIENTS: "The policy names no recipient for this type.",
}
