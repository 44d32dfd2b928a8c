"""Dead letters as the gateway writes them, for the tests of their reader (unit and broker)."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.core.records import OutRecord, dead_letter
from gateway.core.replay import Position
from gateway.reasons import ReasonCode

DECIDED = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
PAYLOAD = b'{"data":{"personal_id":"079190012345","full_name":"Nguyen Thi Minh Khai"}}'
ORIGINAL_HEADERS = (("content-type", b"application/cloudevents+json"), ("trace", b"\x00\x01"))


def dead_letter_record(
    reason: ReasonCode = ReasonCode.REVOKED_CERTIFICATE,
    ingress: str = "xgw.ingress.police",
    *,
    offset: int = 41,
    event_id: str | None = "ev-1",
    key: bytes | None = b"079190012345",
    decided: datetime = DECIDED,
    topic: str = "xgw.deadletter",
) -> OutRecord:
    """A dead letter of one police record, with a personal id in its key and payload."""
    return dead_letter(
        topic=topic,
        position=Position(ingress, 2, offset),
        key=key,
        value=PAYLOAD,
        headers=ORIGINAL_HEADERS,
        now=decided,
        reason=reason,
        detail="certificate serial 1f revoked",
        event_id=event_id,
    )
