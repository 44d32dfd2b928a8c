"""The gateway's own records: ids (the hot-path uuid5 is uuid.uuid5) and the audit record."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.records import AuditRecord, Outcome, audit, audit_record, uuid5_text
from gateway.core.replay import Position
from gateway.reasons import ReasonCode


@given(st.uuids(), st.text())
def test_uuid5_text_equals_uuid_uuid5(namespace: uuid.UUID, name: str) -> None:
    """Any namespace and name agree; a name UTF-8 cannot encode is refused by both."""
    try:
        expected = str(uuid.uuid5(namespace, name))
    except UnicodeEncodeError:  # a lone surrogate: ours must refuse it too
        with pytest.raises(UnicodeEncodeError):
            uuid5_text(namespace.bytes, name)
        return
    assert uuid5_text(namespace.bytes, name) == expected


def test_uuid5_text_of_vietnamese_name() -> None:
    """A fixed example, so a change of encoding cannot pass unnoticed."""
    namespace = uuid.UUID("1b0f6c52-3f55-5a3e-9d44-6c2b3e0a7a01")
    name = "Nguyễn Văn Bình/Phường Bến Nghé"
    assert uuid5_text(namespace.bytes, name) == str(uuid.uuid5(namespace, name))


def test_an_audit_record_has_the_fields_of_its_type_and_plain_json_values() -> None:
    """The builder fills every AuditRecord field; on the wire the outcome is its plain value."""
    record = audit_record(
        decision_id="d-1",
        now=datetime(2026, 11, 20, 8, 30, tzinfo=UTC),
        outcome=Outcome.TIMED_OUT,
        reason=ReasonCode.REQUEST_TIMEOUT,
        detail="no response before the deadline",
        position=Position("xgw.ingress.land", 2, 41),
        record_sha256="ab" * 32,
        agency="land",
        event_id="ev-1",
        event_type="vn.hcm.police.identity_verification_requested.v1",
        subject="sha256:x",
    )
    assert set(record) == AuditRecord.__required_keys__
    written = audit("xgw.audit", record)
    assert written.key == b"ev-1"
    assert written.value is not None
    parsed = json.loads(written.value)
    assert parsed["outcome"] == "timed_out"
    assert parsed["ingress"] == {"topic": "xgw.ingress.land", "partition": 2, "offset": 41}
    assert written.value == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
