"""Deliberately bad records, one per reason code, for the demo and the integration tests.

Each method returns ``(agency whose ingress topic receives it, raw bytes)``. They start from a
correctly signed event and break exactly one thing, so each must be refused for its own reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.client import subject_digest
from gateway import disclosure as sd
from gateway import envelope, outputs
from gateway.keys import SigningKey
from gateway.reasons import ReasonCode
from schemas.base import EventModel

Forged = tuple[str, bytes]


@dataclass(frozen=True)
class Forger:
    """Builds bad records from real agency keys (``keys``: agency id -> its signing key)."""

    keys: dict[str, SigningKey]
    max_record_bytes: int = 256 * 1024

    def signed(
        self,
        agency: str,
        model: EventModel,
        *,
        now: datetime,
        key: SigningKey | None = None,
        event_type: str | None = None,
        data: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """A correctly sealed event (optionally with another key, type or raw data)."""
        attributes = {
            "specversion": envelope.SPECVERSION,
            "id": event_id or str(uuid.uuid4()),
            "source": envelope.agency_source(agency),
            "type": event_type or model.event_type,
            "subject": subject_digest(model.subject_id()),
            "time": outputs.rfc3339(now),
            "datacontenttype": envelope.CONTENT_TYPE,
        }
        body = data if data is not None else model.model_dump(mode="json")
        return envelope.seal(attributes, body, key or self.keys[agency])

    def forge(self, reason: ReasonCode, model: EventModel, now: datetime) -> Forged:
        """A record from ``police`` (``model`` is a police event) refused for ``reason``."""
        return self._makers()[reason](model, now)

    def reasons(self) -> list[ReasonCode]:
        """The reasons :meth:`forge` can produce alone (``duplicate_id`` needs a first copy)."""
        return list(self._makers())

    def _makers(self) -> dict[ReasonCode, Callable[[EventModel, datetime], Forged]]:
        return {
            ReasonCode.RECORD_TOO_LARGE: self._too_large,
            ReasonCode.MALFORMED_ENVELOPE: lambda _m, _n: ("police", b"\xff not json {"),
            ReasonCode.SOURCE_TOPIC_MISMATCH: lambda m, n: (
                "health",
                envelope.encode(self.signed("police", m, now=n)),
            ),
            ReasonCode.UNKNOWN_SIGNER: lambda m, n: (
                "police",
                envelope.encode(self.signed("police", m, now=n, key=SigningKey.generate())),
            ),
            ReasonCode.SIGNER_AGENCY_MISMATCH: lambda m, n: (
                "police",
                envelope.encode(self.signed("police", m, now=n, key=self.keys["health"])),
            ),
            ReasonCode.BAD_SIGNATURE: self._attribute_changed,
            ReasonCode.MALFORMED_DISCLOSURE: self._bad_disclosure,
            ReasonCode.DISCLOSURE_MISMATCH: self._value_changed,
            ReasonCode.DUPLICATE_DISCLOSURE: self._disclosed_twice,
            ReasonCode.UNKNOWN_TYPE: lambda m, n: (
                "police",
                envelope.encode(
                    self.signed("police", m, now=n, event_type="vn.hcm.police.unknown.v1")
                ),
            ),
            ReasonCode.UNAUTHORISED_PUBLISHER: lambda m, n: (
                "health",
                envelope.encode(self.signed("health", m, now=n)),
            ),
            ReasonCode.SCHEMA_VIOLATION: self._schema_violation,
        }

    def _too_large(self, model: EventModel, now: datetime) -> Forged:
        event = self.signed("police", model, now=now)
        event["padding"] = "x" * self.max_record_bytes
        return "police", envelope.encode(event)

    def _attribute_changed(self, model: EventModel, now: datetime) -> Forged:
        event = self.signed("police", model, now=now)
        event["subject"] = subject_digest("079000000000")  # re-pointed at another person
        return "police", envelope.encode(event)

    def _bad_disclosure(self, model: EventModel, now: datetime) -> Forged:
        event = self.signed("police", model, now=now)
        event[envelope.DISCLOSURES] += sd.SEPARATOR + "bm90IGFuIGFycmF5"  # "not an array"
        return "police", envelope.encode(event)

    def _value_changed(self, model: EventModel, now: datetime) -> Forged:
        event = self.signed("police", model, now=now)
        parts = sd.split(event[envelope.DISCLOSURES])
        first = sd.parse(parts[0])
        changed = sd.make(first.name, _other_value(first.value), salt=first.salt)
        event[envelope.DISCLOSURES] = sd.join([changed, *(sd.parse(p) for p in parts[1:])])
        return "police", envelope.encode(event)

    def _disclosed_twice(self, model: EventModel, now: datetime) -> Forged:
        event = self.signed("police", model, now=now)
        parts = sd.split(event[envelope.DISCLOSURES])
        event[envelope.DISCLOSURES] = sd.SEPARATOR.join([*parts, parts[0]])
        return "police", envelope.encode(event)

    def _schema_violation(self, model: EventModel, now: datetime) -> Forged:
        data = json.loads(model.model_dump_json())
        data["personal_id"] = "79" + data["personal_id"][2:-1]  # 11 digits
        return "police", envelope.encode(self.signed("police", model, now=now, data=data))


def _other_value(value: Any) -> Any:
    if isinstance(value, str):
        return value + " (sửa)"
    if isinstance(value, int):
        return value + 1
    return "changed"
