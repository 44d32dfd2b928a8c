"""The pure decision: every reason code, and what an accepted event produces."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from gateway.core import envelope, profile, records, stamp
from gateway.core.envelope import subject_digest
from gateway.core.pipeline import Decision, IngressRecord, Pipeline
from gateway.core.policy import Policy
from gateway.core.records import RECEIPT_TYPE, Unstamped, decision_id
from gateway.core.replay import Position, ReplayWindow, Seen
from gateway.lab.forgery import Forger
from gateway.reasons import ReasonCode
from gateway.wire import merkle
from schemas.health import VaccinationRecorded
from schemas.police import ResidentRegistered
from tests.conftest import NOW, Pki, make_pipeline, make_resident

INGRESS = "xgw.ingress.police"


def record(
    raw: bytes, topic: str = INGRESS, offset: int = 0, key: bytes | None = None
) -> IngressRecord:
    """An ingress record keyed, as the client keys it, by the event's subject."""
    if key is None:
        try:
            key = json.loads(raw)["subject"].encode()
        except (ValueError, KeyError, TypeError, AttributeError):
            key = b"not-an-event"
    return IngressRecord(topic, 0, offset, key, raw, (("trace", b"t-1"),))


def outputs_on(decision: Decision, topic: str) -> list[bytes]:
    return [o.value for o in decision.outputs if o.topic == topic]


def forger(pki: Pki) -> Forger:
    return Forger(pki.keys, pki.ca, max_record_bytes=64 * 1024)


def decide_forged(pipeline: Pipeline, pki: Pki, reason: ReasonCode, resident: ResidentRegistered):
    forged = forger(pki).forge(reason, resident, NOW)
    decision = pipeline.decide(
        record(forged.value, f"xgw.ingress.{forged.agency}", key=forged.key), NOW
    )
    return decision, forged.value, forged.agency, forged.key


def test_accepted_event_goes_to_every_granted_recipient(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered, policy: Policy
) -> None:
    """A valid registration reaches each recipient of its route, with a receipt and audit."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    decision = pipeline.decide(record(raw), NOW)
    assert decision.accepted, decision.detail
    route = policy.route_for(resident.event_type)
    assert route is not None
    assert decision.recipients == tuple(g.agency for g in route.recipients)
    for grant in route.recipients:
        (delivered,) = outputs_on(decision, f"xgw.deliver.{grant.agency}")
        env = envelope.read_envelope(delivered, delivered=True)
        stamp.verify_stamp(env.attributes, pki.trust, NOW)
        _, disclosures = envelope.verify_origin(env, pki.trust, NOW)
        assert set(disclosures) == grant.fields & set(type(resident).model_fields)
        assert env.attributes[profile.PURPOSE] == grant.purpose
        assert env.attributes[profile.LEGAL_BASIS] == grant.legal_basis
    assert outputs_on(decision, "xgw.deadletter") == []


def test_minimised_delivery_does_not_carry_withheld_values(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """Land receives name and id only: the address and birth date are nowhere in its bytes."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    (delivered,) = outputs_on(pipeline.decide(record(raw), NOW), "xgw.deliver.land")
    text = delivered.decode()
    assert "Lê Lợi" not in text
    assert "Sài Gòn" not in text
    assert "1990-05-17" not in text
    env = envelope.read_envelope(delivered, delivered=True)
    _, disclosures = envelope.verify_origin(env, pki.trust, NOW)
    assert disclosures["full_name"].value == "Nguyễn Thị Minh Khai"


def test_receipt_is_stamped_and_positive(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """The police receive a gateway-stamped accepted receipt naming the recipients."""
    event = Forger(pki.keys).signed("police", resident, now=NOW)
    decision = pipeline.decide(record(envelope.encode(event)), NOW)
    (raw_receipt,) = outputs_on(decision, "xgw.receipts.police")
    receipt = json.loads(raw_receipt)
    stamp.verify_stamp(receipt, pki.trust, NOW)
    assert receipt["type"] == RECEIPT_TYPE
    assert receipt["data"]["status"] == "accepted"
    assert receipt["data"]["event_id"] == event["id"]
    assert receipt["data"]["recipients"] == list(decision.recipients)
    assert receipt["xgwrecipient"] == "police"  # its addressee, under the stamp


def test_audit_record_holds_digests_not_personal_data(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """The audit record names ids, digests and purposes, never a name or a personal id."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    (audit,) = outputs_on(pipeline.decide(record(raw), NOW), "xgw.audit")
    text = audit.decode()
    assert resident.personal_id not in text
    assert "Nguyễn" not in text
    body = json.loads(audit)
    assert body["outcome"] == "delivered"
    assert body["subject"] == subject_digest(resident.personal_id)
    assert {r["agency"] for r in body["recipients"]} == {"health", "education", "land"}
    assert all(len(r["sha256"]) == 64 for r in body["recipients"])


# Reasons that need a stream (a first copy, an unrouted type) or a CRL change are tested apart.
NOT_FORGEABLE = {
    ReasonCode.DUPLICATE_ID,
    ReasonCode.NO_RECIPIENTS,
    ReasonCode.REVOKED_CERTIFICATE,
    # These need a request delivered first (tests/gateway/core/test_requests.py).
    ReasonCode.REQUEST_EXPIRED,
    ReasonCode.REQUEST_TIMEOUT,
    # A record the Kafka client cannot decode (tests/system/test_poison.py), and a failure
    # inside the gateway (test_an_internal_error_refuses_only_its_record).
    ReasonCode.UNDECODABLE_RECORD,
    ReasonCode.INTERNAL_ERROR,
}
FORGEABLE = [r for r in ReasonCode if r not in NOT_FORGEABLE]


@pytest.mark.parametrize("reason", FORGEABLE, ids=[r.value for r in FORGEABLE])
def test_each_forged_record_is_rejected_for_its_own_reason(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered, reason: ReasonCode
) -> None:
    """Each deliberately broken record gets its reason, a dead letter and a negative receipt."""
    decision, raw, agency, key = decide_forged(pipeline, pki, reason, resident)
    assert decision.reason is reason, decision.detail
    assert not any(o.topic.startswith("xgw.deliver.") for o in decision.outputs)
    (dead,) = [o for o in decision.outputs if o.topic == "xgw.deadletter"]
    headers = dict(dead.headers)
    if reason is ReasonCode.RECORD_TOO_LARGE:
        # Not copied: the dead letter must fit a Kafka record; the original is found by its
        # ingress position and told apart by its digest.
        assert dead.value == b""
        assert headers["xgw-omitted"] == b"value"
        assert headers["xgw-record-sha256"] == hashlib.sha256(raw).hexdigest().encode()
    else:
        assert dead.value == raw
        assert "xgw-omitted" not in headers
    assert dead.key == (key if key is not None else b"not-an-event")
    assert headers["xgw-reason"] == reason.value.encode()
    assert headers["trace"] == b"t-1"
    (raw_receipt,) = outputs_on(decision, f"xgw.receipts.{agency}")
    receipt = json.loads(raw_receipt)
    stamp.verify_stamp(receipt, pki.trust, NOW)
    assert receipt["data"]["status"] == "rejected"
    assert receipt["data"]["reason"] == reason.value


def test_forger_covers_every_other_reason(pki: Pki) -> None:
    """The forger produces every reason code except those that need a stream or a CRL."""
    assert set(forger(pki).reasons()) == set(FORGEABLE)


def test_replayed_event_is_a_duplicate(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """The same event in a new record is refused as a duplicate id."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    assert pipeline.decide(record(raw, offset=1), NOW).accepted
    second = pipeline.decide(record(raw, offset=2), NOW)
    assert second.reason is ReasonCode.DUPLICATE_ID
    assert outputs_on(second, "xgw.deadletter") == [raw]


def test_redelivered_record_is_processed_again(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """The same record read again (crash before commit) is delivered again, not refused."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    first = pipeline.decide(record(raw, offset=5), NOW)
    again = pipeline.decide(record(raw, offset=5), NOW)
    assert again.accepted
    assert again.redelivery
    assert [o.topic for o in again.outputs] == [o.topic for o in first.outputs]


def test_unrouted_type_has_no_recipients(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """A registered type without a route is refused with no_recipients."""
    vaccination = VaccinationRecorded(
        personal_id=resident.personal_id,
        vaccine_code="MR",
        dose_number=1,
        administered_on=date(2026, 11, 24),
        facility_code="79001",
    )
    raw = envelope.encode(Forger(pki.keys).signed("health", vaccination, now=NOW))
    decision = pipeline.decide(record(raw, "xgw.ingress.health"), NOW)
    assert decision.reason is ReasonCode.NO_RECIPIENTS


def test_record_from_a_non_ingress_topic_is_refused(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """A record that did not come from an agency ingress topic gets a dead letter, no receipt."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    decision = pipeline.decide(record(raw, "xgw.deliver.health"), NOW)
    assert decision.reason is ReasonCode.SOURCE_TOPIC_MISMATCH
    assert {o.topic for o in decision.outputs} == {"xgw.deadletter", "xgw.audit"}


def test_schema_violation_detail_does_not_echo_the_value(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """The rejection detail names the field and rule, never the offending personal data."""
    decision, *_ = decide_forged(pipeline, pki, ReasonCode.SCHEMA_VIOLATION, resident)
    assert "personal_id" in decision.detail
    assert resident.personal_id[2:-1] not in decision.detail


def test_rejection_does_not_enter_the_replay_window(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered
) -> None:
    """A refused event's id is not remembered, so a corrected resend is accepted."""
    forger = Forger(pki.keys)
    bad = forger.signed("police", resident, now=NOW, event_type="vn.hcm.police.unknown.v1")
    assert pipeline.decide(record(envelope.encode(bad), offset=1), NOW).reason is (
        ReasonCode.UNKNOWN_TYPE
    )
    good = forger.signed("police", resident, now=NOW, event_id=bad["id"])
    assert pipeline.decide(record(envelope.encode(good), offset=2), NOW).accepted


def _unstamped(value: bytes | None) -> object:
    """An output's event without its stamp attributes (raw bytes if it is not an event)."""
    assert value is not None
    try:
        event = json.loads(value)
    except ValueError:
        return value
    if not isinstance(event, dict):
        return value
    return {k: v for k, v in event.items() if k not in profile.STAMP_ATTRIBUTES}


def _batch(pki: Pki) -> list[IngressRecord]:
    forger = Forger(pki.keys)
    events = [
        forger.signed("police", make_resident(f"Trần Văn {name}"), now=NOW)
        for name in ("Anh", "Bảo", "Châu")
    ]
    stale = forger.signed("police", make_resident(), now=NOW - timedelta(days=3))
    raws = [envelope.encode(e) for e in (*events, stale)] + [b"{}"]
    return [record(raw, offset=offset) for offset, raw in enumerate(raws)]


def test_decide_is_a_batch_of_one(pki: Pki, policy: Policy, resident: ResidentRegistered) -> None:
    """decide(record) gives exactly decide_batch([record])[0], stamps included."""
    raw = envelope.encode(Forger(pki.keys).signed("police", resident, now=NOW))
    single = make_pipeline(pki, policy).decide(record(raw), NOW)
    (batched,) = make_pipeline(pki, policy).decide_batch([record(raw)], NOW)
    if pki.gateway.alg == "Ed25519":  # ES256 signatures are randomised
        assert single == batched
    assert [_unstamped(o.value) for o in single.outputs] == [
        _unstamped(o.value) for o in batched.outputs
    ]


def test_a_batch_is_stamped_with_one_signature(pki: Pki, policy: Policy) -> None:
    """A batch's deliveries and receipts share one JWS, each verifies, and nothing else changes."""
    records = _batch(pki)
    batched = make_pipeline(pki, policy).decide_batch(records, NOW)
    one_pipeline = make_pipeline(pki, policy)
    singles = [one_pipeline.decide(r, NOW) for r in records]
    assert [d.reason for d in batched] == [
        *(None, None, None),
        ReasonCode.STALE_EVENT,
        ReasonCode.MISSING_ATTRIBUTE,
    ]
    stamped = [
        json.loads(o.value)
        for d in batched
        for o in d.outputs
        if o.value is not None and o.topic.startswith(("xgw.deliver.", "xgw.receipts."))
    ]
    assert len(stamped) == 3 * 4 + 2
    assert len({e[profile.STAMP] for e in stamped}) == 1
    proofs = sorted(merkle.decode_proof(e[profile.STAMP_PROOF])[:2] for e in stamped)
    assert proofs == [(i, len(stamped)) for i in range(len(stamped))]
    for event in stamped:
        stamp.verify_stamp(event, pki.trust, NOW)
    for one, many in zip(singles, batched, strict=True):
        assert (one.reason, one.recipients, one.event_id) == (
            many.reason,
            many.recipients,
            many.event_id,
        )
        assert [(o.topic, o.key, o.headers) for o in one.outputs] == [
            (o.topic, o.key, o.headers) for o in many.outputs
        ]
        assert [_unstamped(o.value) for o in one.outputs] == [
            _unstamped(o.value) for o in many.outputs
        ]


def test_audit_digest_is_the_leaf_hash_of_each_delivery(pki: Pki, policy: Policy) -> None:
    """The audit names each delivery by its leaf hash, which does not depend on the batch."""
    records = _batch(pki)
    batched = make_pipeline(pki, policy).decide_batch(records, NOW)
    single = make_pipeline(pki, policy).decide(records[1], NOW)
    for decision in (batched[1], single):
        (audit,) = outputs_on(decision, "xgw.audit")
        digests = {r["agency"]: r["sha256"] for r in json.loads(audit)["recipients"]}
        for agency, digest in digests.items():
            (delivered,) = outputs_on(decision, f"xgw.deliver.{agency}")
            assert stamp.leaf(json.loads(delivered)).hash.hex() == digest
    assert outputs_on(batched[1], "xgw.audit")[0] == outputs_on(single, "xgw.audit")[0]


def test_an_empty_batch_signs_nothing(pipeline: Pipeline) -> None:
    """An empty batch gives no decisions (and no signature over an empty tree)."""
    assert pipeline.decide_batch([], NOW) == []


def test_decision_id_is_stable_for_a_record_and_new_for_a_rewritten_one() -> None:
    """Re-reading a record keeps its decision id; the same bytes written anew get another."""
    first = Position(INGRESS, 0, 7, 1_790_000_000_000)
    assert decision_id(first, "ab") == decision_id(Position(INGRESS, 0, 7, 1_790_000_000_000), "ab")
    assert decision_id(first, "ab") != decision_id(Position(INGRESS, 0, 7, 1_790_000_000_001), "ab")
    assert decision_id(first, "ab") != decision_id(first, "cd")


def test_dead_letter_drops_the_publishers_own_xgw_headers(pipeline: Pipeline) -> None:
    """A publisher cannot plant a reason in the dead-letter headers; its other headers stay."""
    forged = IngressRecord(
        INGRESS, 0, 0, b"k", b"not json", (("xgw-reason", b"no_problem"), ("trace", b"t-1"))
    )
    decision = pipeline.decide(forged, NOW)
    (dead,) = [o for o in decision.outputs if o.topic == "xgw.deadletter"]
    reasons = [v for k, v in dead.headers if k == "xgw-reason"]
    assert reasons == [b"malformed_envelope"]
    assert ("trace", b"t-1") in dead.headers


class _FailingWindow(ReplayWindow):
    """A replay window with a defect: it raises on one event id."""

    def check(self, key: tuple[str, str], position: Position, now: datetime) -> Seen:
        if key[1] == POISON_ID:
            raise KeyError("079190012345")  # a message quoting data must not reach any output
        return super().check(key, position, now)


POISON_ID = "3f0c7b8e-poison"


def _batch_with_poison(pki: Pki, resident: ResidentRegistered) -> list[IngressRecord]:
    signed = Forger(pki.keys).signed
    poison = envelope.encode(signed("police", resident, now=NOW, event_id=POISON_ID))
    valid = envelope.encode(signed("police", make_resident("Trần Văn Bình"), now=NOW))
    return [record(poison, offset=1), record(valid, offset=2)]


def _assert_refused_alone(decisions: list[Decision], poison: IngressRecord) -> None:
    failed, after = decisions
    assert failed.reason is ReasonCode.INTERNAL_ERROR
    assert outputs_on(failed, "xgw.deadletter") == [poison.value]
    (receipt,) = outputs_on(failed, "xgw.receipts.police")
    assert json.loads(receipt)["data"]["reason"] == "internal_error"
    assert len(outputs_on(failed, "xgw.audit")) == 1
    assert not [o for o in failed.outputs if o.topic.startswith("xgw.deliver.")]
    for out in failed.outputs:
        assert b"079190012345" not in b"".join(v for _, v in out.headers)
    assert "079190012345" not in failed.detail
    assert after.accepted, after.detail
    assert {o.topic for o in after.outputs} >= {"xgw.deliver.health", "xgw.deliver.land"}


def test_an_internal_error_refuses_only_its_record(
    pki: Pki, policy: Policy, resident: ResidentRegistered
) -> None:
    """A component that raises while deciding one record costs that record alone."""
    pipeline = make_pipeline(pki, policy, _FailingWindow(timedelta(days=1), 100))
    batch = _batch_with_poison(pki, resident)
    decisions = pipeline.decide_batch(batch, NOW)
    _assert_refused_alone(decisions, batch[0])
    assert decisions[0].detail.startswith("internal error: KeyError at test_pipeline.py:")


def test_a_record_that_cannot_be_stamped_is_refused_alone(
    pipeline: Pipeline, pki: Pki, resident: ResidentRegistered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while stamping the batch is traced to its record; the others are stamped."""
    real = records.stamp_outputs

    def failing(drafts: Any, key: Any) -> Any:
        for outs in drafts:
            for draft in outs:
                if isinstance(draft, Unstamped) and draft.leaf.event.get("id") == POISON_ID:
                    raise ValueError("cannot stamp")
        return real(drafts, key)

    monkeypatch.setattr(records, "stamp_outputs", failing)
    batch = _batch_with_poison(pki, resident)
    decisions = pipeline.decide_batch(batch, NOW)
    _assert_refused_alone(decisions, batch[0])
    assert "ValueError" in decisions[0].detail
