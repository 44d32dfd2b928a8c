"""The base of every event model: strict fields, NFC text, and the CloudEvents type it maps to."""

from __future__ import annotations

import unicodedata
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


def nfc(value: Any) -> Any:
    """Return ``value`` with every string (dict keys included) normalised to Unicode NFC."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nfc(v) for v in value]
    return value


def describe_errors(exc: ValidationError, limit: int = 1) -> str:
    """``"field.path: message (+N more)"`` for the first ``limit`` errors, without input values.

    Validation errors go into receipts, dead-letter headers and logs, where the offending
    value (often personal data) must not appear. A configuration file's reader passes a
    larger ``limit``: there the second error is often the real typo.
    """
    errors = exc.errors(include_input=False, include_url=False)
    shown = [
        f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
        for error in errors[:limit]
    ]
    more = f" (+{len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(shown) + more


class Record(BaseModel):
    """A strict, immutable record whose text is normalised to NFC before validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _normalise_text(cls, data: Any) -> Any:
        # JCS does not normalise Unicode: "Nguyễn" precomposed and decomposed sign differently,
        # so text is brought to NFC before anything is signed or compared.
        return nfc(data)


class EventModel(Record):
    """A message type of the exchange.

    ``event_type`` is the CloudEvents ``type`` (``vn.hcm.<agency>.<event>.v<major>``);
    ``subject_field`` names the field that identifies the person the event is about.
    """

    event_type: ClassVar[str]
    subject_field: ClassVar[str] = "personal_id"

    def subject_id(self) -> str:
        """The identifier of the person the event is about."""
        return str(getattr(self, self.subject_field))


class RequestModel(EventModel):
    """A question addressed to exactly one agency, which answers with ``response_type``.

    The gateway delivers a request to the one agency the policy names as its answerer and
    remembers it until its deadline; the response must carry the request's ``id`` as its
    ``correlationid`` and the same subject, and is delivered only to the requester.
    """

    response_type: ClassVar[str]


class ResponseModel(EventModel):
    """The answer to a request; the subject is the same person the request asked about."""

    request_type: ClassVar[str]
