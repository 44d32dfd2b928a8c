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
    JSON_TOO_DEEP = "json_too_deep"
    MALFORMED_ENVELOPE = "malformed_envelope"
    MISSING_ATTRIBUTE = "missing_attribute"
    STRING_TOO_LONG = "string_too_long"
    SOURCE_TOPIC_MISMATCH = "source_topic_mismatch"
    RECORD_KEY_MISMATCH = "record_key_mismatch"
    STALE_EVENT = "stale_event"
    FUTURE_EVENT = "future_event"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_SIGNER = "unknown_signer"
    UNTRUSTED_CERTIFICATE = "untrusted_certificate"
    WRONG_KEY_USAGE = "wrong_key_usage"
    CERTIFICATE_NOT_YET_VALID = "certificate_not_yet_valid"
    CERTIFICATE_EXPIRED = "certificate_expired"
    REVOKED_CERTIFICATE = "revoked_certificate"
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
    BAD_DEADLINE = "bad_deadline"
    WRONG_RESPONDER = "wrong_responder"
    UNKNOWN_REQUEST = "unknown_request"
    REQUEST_EXPIRED = "request_expired"
    SUBJECT_MISMATCH = "subject_mismatch"
    REQUEST_TIMEOUT = "request_timeout"
    UNAUTHORISED_REQUESTER = "unauthorised_requester"
    UNKNOWN_ATTRIBUTE = "unknown_attribute"
    REINJECTED_DELIVERY = "reinjected_delivery"
    UNDECODABLE_RECORD = "undecodable_record"
    INTERNAL_ERROR = "internal_error"

    @property
    def description(self) -> str:
        """One sentence for the documentation table and for receipts."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS: dict[ReasonCode, str] = {
    ReasonCode.RECORD_TOO_LARGE: "The record is larger than the configured maximum size.",
    ReasonCode.JSON_TOO_DEEP: (
        "Arrays and objects nest deeper than the configured limit (checked before parsing)."
    ),
    ReasonCode.MALFORMED_ENVELOPE: (
        "The bytes are not a CloudEvents 1.0 structured JSON event of the gateway's profile "
        "(not UTF-8 I-JSON, a lone surrogate or noncharacter in any text, a mistyped "
        "attribute, a time that is not RFC 3339)."
    ),
    ReasonCode.MISSING_ATTRIBUTE: "A required CloudEvents attribute is missing or empty.",
    ReasonCode.STRING_TOO_LONG: "An attribute or disclosed text is longer than the limit.",
    ReasonCode.SOURCE_TOPIC_MISMATCH: (
        "The event's source names another agency than the ingress topic it was written to."
    ),
    ReasonCode.RECORD_KEY_MISMATCH: "The Kafka record key is not the event's subject.",
    ReasonCode.STALE_EVENT: "The event's time is older than the accepted age.",
    ReasonCode.FUTURE_EVENT: "The event's time is further ahead than the accepted clock skew.",
    ReasonCode.UNSUPPORTED_ALGORITHM: (
        "The signature's alg is not Ed25519, ES256 or EdDSA (the deprecated name of Ed25519);"
        " 'none' and HMAC are refused."
    ),
    ReasonCode.UNKNOWN_SIGNER: (
        "The signature names no certificate the trust store knows, or its kid is not the "
        "certificate's x5t#S256 thumbprint."
    ),
    ReasonCode.UNTRUSTED_CERTIFICATE: (
        "The signing certificate does not chain to the exchange root CA, or names no agency."
    ),
    ReasonCode.WRONG_KEY_USAGE: "The signing certificate is not restricted to signing.",
    ReasonCode.CERTIFICATE_NOT_YET_VALID: "The signing certificate's validity has not begun.",
    ReasonCode.CERTIFICATE_EXPIRED: "The signing certificate has expired.",
    ReasonCode.REVOKED_CERTIFICATE: "The signing certificate is on the CA's revocation list.",
    ReasonCode.SIGNER_AGENCY_MISMATCH: (
        "The signing certificate belongs to another agency than the event's source."
    ),
    ReasonCode.BAD_SIGNATURE: (
        "The origin signature does not verify over the canonical signed form of the event."
    ),
    ReasonCode.MALFORMED_DISCLOSURE: (
        "A disclosure is not a valid [salt, name, value] array, or the signed data holds a "
        "value that is not behind a digest."
    ),
    ReasonCode.DISCLOSURE_MISMATCH: "A disclosure's digest is not among the signed digests.",
    ReasonCode.DUPLICATE_DISCLOSURE: "Two disclosures carry the same digest or the same field.",
    ReasonCode.UNKNOWN_TYPE: "The event type (with its major version) is not registered.",
    ReasonCode.UNAUTHORISED_PUBLISHER: "The policy does not let this agency publish this type.",
    ReasonCode.SCHEMA_VIOLATION: "The disclosed data does not validate against the type's schema.",
    ReasonCode.DUPLICATE_ID: "An event with the same source and id was already accepted.",
    ReasonCode.NO_RECIPIENTS: "The policy names no recipient for this type.",
    ReasonCode.BAD_DEADLINE: (
        "A request's xgwdeadline is not an RFC 3339 time, has passed, or is further than the "
        "policy's max_timeout_seconds from the event's time or from the gateway's receipt."
    ),
    ReasonCode.WRONG_RESPONDER: "The policy names another agency as the answerer of this request.",
    ReasonCode.UNKNOWN_REQUEST: (
        "A response's correlationid names no request the gateway delivered, a request of "
        "another type, or one already answered."
    ),
    ReasonCode.REQUEST_EXPIRED: "The response came after the request's deadline.",
    ReasonCode.SUBJECT_MISMATCH: (
        "The subject is not the digest of the data's subject field (personal_id), or a "
        "response is about another person than its request."
    ),
    ReasonCode.REQUEST_TIMEOUT: (
        "No response came before the request's deadline (a receipt to the requester, not a "
        "rejection of a record)."
    ),
    ReasonCode.UNAUTHORISED_REQUESTER: (
        "The policy does not let this agency ask this request type (or no longer does, for a "
        "response to a request asked before a policy change)."
    ),
    ReasonCode.UNKNOWN_ATTRIBUTE: (
        "The event carries an attribute outside the profile (CloudEvents core attributes and "
        "the documented xgw* set): it would reach every recipient unprojected."
    ),
    ReasonCode.REINJECTED_DELIVERY: (
        "The record carries an attribute only the gateway sets (the reserved attributes of "
        "docs/envelope.md: xgwrecipient, xgwpurpose, xgwlegalbasis, xgwsignercert, xgwstamp, "
        "xgwstampproof): a delivery or a receipt, or a copy of one, written back to an ingress "
        "topic."
    ),
    ReasonCode.UNDECODABLE_RECORD: (
        "The Kafka client cannot decode the record (a header key that is not UTF-8, a corrupt "
        "or unsupported record batch); the gateway read its bytes itself."
    ),
    ReasonCode.INTERNAL_ERROR: (
        "The gateway failed unexpectedly while deciding this record; the record alone is "
        "refused, the error is logged and counted, and the batch goes on."
    ),
}
