"""Request/reply in the pure pipeline: routing, correlation, deadlines and timeout receipts."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from gateway.clock import rfc3339
from gateway.core import envelope, profile, stamp
from gateway.core import records as outputs
from gateway.core.pending import ANSWERED, TIMED_OUT, MemoryPending
from gateway.core.pipeline import Decision, IngressRecord, Pipeline
from gateway.core.replay import Position, ReplayWindow
from gateway.lab.forgery import Forger
from gateway.reasons import ReasonCode
from schemas.base import EventModel
from schemas.police import IdentityVerificationRequested, IdentityVerified
from tests.conftest import NOW, Pki, make_resident
from tests.support import stamping

PARTITION = 3
QUESTION = IdentityVerificationRequested(
    personal_id="079190012345", full_name="Nguyễn Thị Minh Khai", date_of_birth=date(1990, 5, 17)
)
ANSWER = IdentityVerified(
    personal_id="079190012345", match=True, full_name_matches=True, date_of_birth_matches=True
)


@pytest.fixture
def pending(pipeline: Pipeline) -> MemoryPending:
    return pipeline._pending  # type: ignore[return-value] # the fixture's default store


def _record(
    pki: Pki,
    agency: str,
    model: EventModel,
    offset: int,
    *,
    at: datetime = NOW,
    event_id: str | None = None,
    **attributes: str,
) -> IngressRecord:
    event = Forger(pki.keys).signed(agency, model, now=at, event_id=event_id, attributes=attributes)
    return IngressRecord(
        f"xgw.ingress.{agency}",
        PARTITION,
        offset,
        event["subject"].encode(),
        envelope.encode(event),
    )


def _ask(pki: Pki, agency: str = "land", *, seconds: float = 10, offset: int = 0) -> IngressRecord:
    deadline = rfc3339(NOW + timedelta(seconds=seconds))
    return _record(pki, agency, QUESTION, offset, event_id=str(uuid.uuid4()), xgwdeadline=deadline)


def _delivered(decision: Decision) -> dict[str, dict]:
    return {
        o.topic.rsplit(".", 1)[-1]: json.loads(o.value)
        for o in decision.outputs
        if o.topic.startswith("xgw.deliver.") and o.value is not None
    }


def _request_id(record: IngressRecord) -> str:
    return str(json.loads(record.value)["id"])


def test_request_goes_only_to_the_answerer_for_the_requesters_purpose(
    pipeline: Pipeline, pki: Pki, pending: MemoryPending
) -> None:
    """Land's question reaches police alone, with land's purpose, and is remembered."""
    asked = _ask(pki)
    decision = pipeline.decide(asked, NOW)
    assert decision.accepted, decision.detail
    assert decision.kind == "request"
    (police,) = _delivered(decision).values()
    assert police["xgwrecipient"] == "police"
    assert police["xgwpurpose"] == "land_owner_identity"
    entry = pending.get(PARTITION, _request_id(asked))
    assert entry is not None
    assert entry.requester == "land"


def test_response_goes_only_to_the_requester_with_the_granted_fields(
    pipeline: Pipeline, pki: Pki, pending: MemoryPending
) -> None:
    """Police's answer is delivered to land alone and closes the request."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    answer = _record(pki, "police", ANSWER, 0, correlationid=_request_id(asked))
    decision = pipeline.decide(answer, NOW + timedelta(seconds=1))
    assert decision.accepted, decision.detail
    assert decision.kind == "response"
    assert decision.recipients == ("land",)
    (land,) = _delivered(decision).values()
    assert land["correlationid"] == _request_id(asked)
    names = {json.loads(envelope.b64url.decode(d))[1] for d in land["xgwdisclosures"].split("~")}
    assert names == {"personal_id", "match", "full_name_matches", "date_of_birth_matches"}
    entry = pending.get(PARTITION, _request_id(asked))
    assert entry is not None
    assert entry.status == ANSWERED


def test_a_second_answer_is_refused(pipeline: Pipeline, pki: Pki) -> None:
    """Once answered, another response to the same request is refused as unknown."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    pipeline.decide(_record(pki, "police", ANSWER, 0, correlationid=_request_id(asked)), NOW)
    again = pipeline.decide(
        _record(pki, "police", ANSWER, 1, correlationid=_request_id(asked)), NOW
    )
    assert again.reason is ReasonCode.UNKNOWN_REQUEST


def test_a_redelivered_answer_is_delivered_again(pipeline: Pipeline, pki: Pki) -> None:
    """The same response record decided again after a crash is delivered again, not refused."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    answer = _record(pki, "police", ANSWER, 0, correlationid=_request_id(asked))
    first = pipeline.decide(answer, NOW)
    second = pipeline.decide(answer, NOW)
    assert second.accepted, second.detail
    assert second.redelivery
    assert _delivered(first).keys() == _delivered(second).keys() == {"land"}


@pytest.mark.parametrize(
    ("agency", "correlation", "reason"),
    [
        ("health", "asked", ReasonCode.WRONG_RESPONDER),
        ("police", "unknown", ReasonCode.UNKNOWN_REQUEST),
        ("police", None, ReasonCode.MISSING_ATTRIBUTE),
    ],
)
def test_responses_are_checked_against_the_pending_request(
    pipeline: Pipeline, pki: Pki, agency: str, correlation: str | None, reason: ReasonCode
) -> None:
    """A response from the wrong agency, to an unknown request or without correlation fails."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    attributes = {}
    if correlation is not None:
        attributes["correlationid"] = (
            _request_id(asked) if correlation == "asked" else str(uuid.uuid4())
        )
    decision = pipeline.decide(_record(pki, agency, ANSWER, 0, **attributes), NOW)
    assert decision.reason is reason, decision.detail
    assert not _delivered(decision)


def test_an_answer_about_another_person_is_refused(pipeline: Pipeline, pki: Pki) -> None:
    """The response must be about the subject of the request."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    other = ANSWER.model_copy(update={"personal_id": "079190054321"})
    # Keyed by its own subject; it reaches the request's worker when the partitions collide.
    forged = _record(pki, "police", other, 0, correlationid=_request_id(asked))
    decision = pipeline.decide(forged, NOW)
    assert decision.reason is ReasonCode.SUBJECT_MISMATCH, decision.detail


def test_a_late_answer_is_refused_as_expired(pipeline: Pipeline, pki: Pki) -> None:
    """An answer after the deadline is refused, whether or not the timeout was sent yet."""
    asked = _ask(pki, seconds=5)
    pipeline.decide(asked, NOW)
    answer = _record(
        pki, "police", ANSWER, 0, at=NOW + timedelta(seconds=6), correlationid=_request_id(asked)
    )
    assert pipeline.decide(answer, NOW + timedelta(seconds=6)).reason is (
        ReasonCode.REQUEST_EXPIRED
    )


def test_an_unanswered_request_gets_one_timeout_receipt(pipeline: Pipeline, pki: Pki) -> None:
    """After the deadline the requester gets a stamped timeout receipt, once."""
    asked = _ask(pki, seconds=5)
    pipeline.decide(asked, NOW)
    assert pipeline.expire(NOW + timedelta(seconds=4)) == []
    (decision,) = pipeline.expire(NOW + timedelta(seconds=6))
    assert decision.kind == "timeout"
    assert decision.reason is ReasonCode.REQUEST_TIMEOUT
    (receipt,) = [o for o in decision.outputs if o.topic == "xgw.receipts.land"]
    assert receipt.value is not None
    body = json.loads(receipt.value)
    stamp.verify_stamp(body, pki.trust, NOW)
    assert body["data"]["status"] == "timed_out"
    assert body["data"]["event_id"] == _request_id(asked)
    assert body["xgwrecipient"] == "land"  # the requester, under the stamp
    (audit,) = [o for o in decision.outputs if o.topic == "xgw.audit"]
    assert audit.value is not None
    assert json.loads(audit.value)["outcome"] == TIMED_OUT
    assert pipeline.expire(NOW + timedelta(seconds=7)) == []
    late = _record(
        pki, "police", ANSWER, 0, at=NOW + timedelta(seconds=7), correlationid=_request_id(asked)
    )
    assert pipeline.decide(late, NOW + timedelta(seconds=7)).reason is ReasonCode.REQUEST_EXPIRED


def test_timeout_receipts_due_together_share_one_stamp(pipeline: Pipeline, pki: Pki) -> None:
    """expire() stamps all its timeout receipts with one signature; each verifies alone."""
    asked = [_ask(pki, seconds=5, offset=0), _ask(pki, seconds=6, offset=1)]
    for record in asked:
        assert pipeline.decide(record, NOW).accepted
    decisions = pipeline.expire(NOW + timedelta(seconds=7))
    assert [d.event_id for d in decisions] == [_request_id(r) for r in asked]
    receipts = [
        json.loads(o.value)
        for d in decisions
        for o in d.outputs
        if o.topic == "xgw.receipts.land" and o.value is not None
    ]
    assert len({r[profile.STAMP] for r in receipts}) == 1
    assert [r[profile.STAMP_PROOF].split(".")[:2] for r in receipts] == [["0", "2"], ["1", "2"]]
    for receipt in receipts:
        stamp.verify_stamp(receipt, pki.trust, NOW)
    alone = outputs.unstamped_timeout_receipt(
        agency="land",
        topic="xgw.receipts.land",
        position=Position("xgw.ingress.land", PARTITION, 0),
        now=NOW + timedelta(seconds=7),
        request_id=receipts[0]["subject"],
        request_type=receipts[0]["data"]["event_type"],
        record_sha256=receipts[0]["data"]["record_sha256"],
    )
    ((stamped,),) = outputs.stamp_outputs([[alone]], pki.gateway)
    assert stamped.value == envelope.encode(stamping.stamp(receipts[0], pki.gateway))


@pytest.mark.parametrize(
    ("deadline", "detail"),
    [
        (None, "missing"),
        ("tomorrow", "RFC 3339"),
        ("2026-11-26T10:00:00", "UTC offset"),
        ("past", "passed"),
        ("far", "more than 30s"),
    ],
)
def test_request_deadlines_are_checked(
    pipeline: Pipeline, pki: Pki, deadline: str | None, detail: str
) -> None:
    """A missing, malformed, past or too distant deadline is refused with a clear detail."""
    values = {
        "past": rfc3339(NOW - timedelta(seconds=1)),
        "far": rfc3339(NOW + timedelta(minutes=5)),
    }
    attributes = {} if deadline is None else {"xgwdeadline": values.get(deadline, deadline)}
    decision = pipeline.decide(_record(pki, "land", QUESTION, 0, **attributes), NOW)
    assert not decision.accepted
    assert detail in decision.detail
    assert decision.reason in {ReasonCode.BAD_DEADLINE, ReasonCode.MISSING_ATTRIBUTE}


def test_only_named_requesters_may_ask(pipeline: Pipeline, pki: Pki) -> None:
    """Health has no purpose for identity verification: its question is refused."""
    decision = pipeline.decide(_ask(pki, "health"), NOW)
    assert decision.reason is ReasonCode.UNAUTHORISED_REQUESTER


def test_answer_is_delivered_again_even_if_its_replay_entry_was_lost(
    pipeline: Pipeline, pki: Pki, pending: MemoryPending
) -> None:
    """A crash between the pending-request write and the replay write loses no answer."""
    asked = _ask(pki)
    pipeline.decide(asked, NOW)
    answer = _record(pki, "police", ANSWER, 0, correlationid=_request_id(asked))
    assert pipeline.decide(answer, NOW).accepted
    # A worker that recovered the answered request but not the answer's replay entry.
    restarted = Pipeline(pipeline._config, ReplayWindow(timedelta(days=1), 1000), pending)
    again = restarted.decide(answer, NOW)
    assert again.accepted, again.detail
    assert _delivered(again).keys() == {"land"}


def test_a_request_read_again_after_its_deadline_keeps_its_decision(
    pipeline: Pipeline, pki: Pki
) -> None:
    """Deciding the same request record again after a long outage does not refuse it."""
    asked = _ask(pki, seconds=5)
    assert pipeline.decide(asked, NOW).accepted
    again = pipeline.decide(asked, NOW + timedelta(minutes=10))
    assert again.accepted, again.detail
    assert again.redelivery


@pytest.mark.parametrize(
    ("attribute", "value"),
    [("correlationid", "c7a1e4f6-0000-4000-8000-000000000001"), ("xgwdeadline", "x")],
)
def test_exchange_attributes_only_on_their_kind(
    pipeline: Pipeline, pki: Pki, attribute: str, value: str
) -> None:
    """A plain event may carry neither a correlation id nor a deadline."""
    event = make_resident()
    record = _record(pki, "police", event, 0, **{attribute: value})
    decision = pipeline.decide(record, NOW)
    assert decision.reason is ReasonCode.MALFORMED_ENVELOPE
    assert attribute in decision.detail


def test_a_record_off_its_keys_partition_is_refused(pki: Pki, pipeline: Pipeline) -> None:
    """With the partition check on, a record placed on another partition than its key's fails."""
    config = replace(pipeline._config, key_partition=lambda _key: 1)
    checked = Pipeline(config, ReplayWindow(timedelta(days=1), 1000))
    decision = checked.decide(_ask(pki), NOW)  # written to partition 3
    assert decision.reason is ReasonCode.RECORD_KEY_MISMATCH
    assert "belongs on 1" in decision.detail
