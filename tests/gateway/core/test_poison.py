"""Poison records, class by class: each gets its own reason, a dead letter and a negative receipt.

The classes of issue 13: text that is not Unicode, wrong JSON types anywhere, attributes outside
the profile, a subject that is not the person of the data, a kid that is not the certificate,
times that are ISO 8601 but not RFC 3339, deadlines past the bound, a delivery written back.
Records that need signing are signed with the agency's real key, so only the rule under test
can refuse them.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from gateway.clock import rfc3339
from gateway.core import envelope, profile
from gateway.core.envelope import subject_digest
from gateway.core.pipeline import Decision, IngressRecord, Pipeline
from gateway.lab.forgery import Forger
from gateway.reasons import ReasonCode
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from schemas.police import IdentityVerificationRequested, IdentityVerified
from tests.conftest import NOW, Pki, make_resident
from tests.support.poison import (
    STRING_ATTRIBUTES,
    SURROGATES,
    WRONG_VALUES,
    resigned,
    with_surrogate,
)


def _event(pki: Pki, **attributes: Any) -> dict[str, Any]:
    return Forger(pki.keys).signed("police", make_resident(), now=NOW, attributes=attributes)


def _resigned(pki: Pki, event: dict[str, Any], agency: str = "police") -> dict[str, Any]:
    return resigned(event, pki.keys[agency])


def _decide(pipeline: Pipeline, raw: bytes, key: bytes, agency: str = "police") -> Decision:
    return pipeline.decide(IngressRecord(f"xgw.ingress.{agency}", 0, 7, key, raw), NOW)


def _assert_refused(decision: Decision, raw: bytes, reason: ReasonCode, agency: str = "police"):
    assert decision.reason is reason, decision.detail
    assert not [o for o in decision.outputs if o.topic.startswith("xgw.deliver.")]
    (dead,) = [o for o in decision.outputs if o.topic == "xgw.deadletter"]
    assert (dead.value, dict(dead.headers)["xgw-reason"]) == (raw, reason.value.encode())
    (receipt,) = [o for o in decision.outputs if o.topic == f"xgw.receipts.{agency}"]
    assert json.loads(receipt.value)["data"]["reason"] == reason.value


@pytest.mark.parametrize("name", STRING_ATTRIBUTES)
@pytest.mark.parametrize("escape", SURROGATES)
def test_a_lone_surrogate_in_any_string_attribute_is_a_malformed_envelope(
    pipeline: Pipeline, pki: Pki, name: str, escape: str
) -> None:
    """RFC 7493: no lone surrogate anywhere; refused at parse time, the place named."""
    event = _event(pki)
    raw = with_surrogate(event, name, escape)
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_ENVELOPE)
    assert f"/{name}" in decision.detail


def test_a_lone_surrogate_in_a_member_name_or_in_data_is_a_malformed_envelope(
    pipeline: Pipeline, pki: Pki
) -> None:
    event = _event(pki)
    for raw in (
        envelope.encode(event).replace(b'"_sd_alg"', b'"_sd_alg\\udc00"'),
        envelope.encode(event)[:-1] + b',"x\\ud800":1}',
    ):
        _assert_refused(_decide(pipeline, raw, b"k"), raw, ReasonCode.MALFORMED_ENVELOPE)


@pytest.mark.parametrize("name", [*STRING_ATTRIBUTES, "data"])
@pytest.mark.parametrize("value", WRONG_VALUES, ids=repr)
def test_a_wrong_json_type_at_any_attribute_is_refused(
    pipeline: Pipeline, pki: Pki, name: str, value: Any
) -> None:
    """Every attribute with every wrong JSON type (signed again): refused, never a crash."""
    event = {**_event(pki), name: value}
    if name != profile.SIGNATURE:
        event = _resigned(pki, event)
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, str(event.get("subject")).encode())
    expected = {ReasonCode.MALFORMED_ENVELOPE, ReasonCode.MISSING_ATTRIBUTE}
    if name == "data" and isinstance(value, dict):
        expected = {ReasonCode.MALFORMED_DISCLOSURE}
    if name == profile.DISCLOSURES and value == "":
        expected = {ReasonCode.SCHEMA_VIOLATION}  # no field disclosed: none of the required
    assert decision.reason in expected, (decision.reason, decision.detail)
    _assert_refused(decision, raw, decision.reason)


@pytest.mark.parametrize("value", [*WRONG_VALUES, "sha256", "A" * 42, "A" * 44, "+" * 43])
def test_an_sd_member_that_is_not_a_sha256_digest_is_a_malformed_disclosure(
    pipeline: Pipeline, pki: Pki, value: Any
) -> None:
    """Each ``_sd`` member must be the base64url of a SHA-256 digest (43 characters)."""
    event = _event(pki)
    event["data"] = {**event["data"], "_sd": [*event["data"]["_sd"], value]}
    event = _resigned(pki, event)
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    # A number beyond double precision leaves the signed form with no RFC 8785 bytes at all.
    unsignable = isinstance(value, int) and not isinstance(value, bool) and value > 2**53
    reason = ReasonCode.MALFORMED_ENVELOPE if unsignable else ReasonCode.MALFORMED_DISCLOSURE
    _assert_refused(decision, raw, reason)


@pytest.mark.parametrize(
    "array",
    [
        [1, "full_name", "x"],
        ["c2FsdHNhbHRzYWx0c2FsdA", 7, "x"],
        ["c2FsdHNhbHRzYWx0c2FsdA", {"a": 1}, "x"],
        ["c2FsdHNhbHRzYWx0c2FsdA", "full_name"],
        ["c2FsdHNhbHRzYWx0c2FsdA", "_sd", "x"],
        {"salt": "x", "name": "full_name", "value": "x"},
        "full_name",
        None,
    ],
    ids=repr,
)
def test_a_disclosure_of_wrong_shape_is_a_malformed_disclosure(
    pipeline: Pipeline, pki: Pki, array: Any
) -> None:
    """A disclosure whose digest is signed but whose array is not [salt, name, value]."""
    event = _event(pki)
    encoded = b64url.encode(json.dumps(array).encode())
    event["data"] = {**event["data"], "_sd": sorted([*event["data"]["_sd"], sd.digest_of(encoded)])}
    event[profile.DISCLOSURES] = event[profile.DISCLOSURES] + "~" + encoded
    event = _resigned(pki, event)
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_DISCLOSURE)


@pytest.mark.parametrize(
    "text",
    [
        '["c2FsdHNhbHRzYWx0c2FsdA", "full_name", 1e400]',
        '["c2FsdHNhbHRzYWx0c2FsdA", "full_name", "Nguy\\ud800n"]',
        '["c2FsdHNhbHRzYWx0c2FsdA", "full_name", "\\uffff"]',
        '["c2FsdHNhbHRzYWx0c2FsdA", "full_name", {"a": 1, "a": 2}]',
        '["c2FsdHNhbHRzYWx0c2FsdA", "full_name", NaN]',
        '\ufeff["c2FsdHNhbHRzYWx0c2FsdA", "full_name", "x"]',
    ],
)
def test_a_disclosure_that_is_not_i_json_is_a_malformed_disclosure(
    pipeline: Pipeline, pki: Pki, text: str
) -> None:
    """Signed by its digest, but no I-JSON inside: refused, whichever field it would fill."""
    event = _event(pki)
    encoded = b64url.encode(text.encode())
    kept = [p for p in sd.split(event[profile.DISCLOSURES]) if sd.parse(p).name != "full_name"]
    event["data"] = {
        **event["data"],
        "_sd": sorted([*map(sd.digest_of, kept), sd.digest_of(encoded)]),
    }
    event[profile.DISCLOSURES] = sd.SEPARATOR.join([*kept, encoded])
    event = _resigned(pki, event)
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_DISCLOSURE)


def test_a_number_beyond_a_double_anywhere_in_the_record_is_a_malformed_envelope(
    pipeline: Pipeline, pki: Pki
) -> None:
    event = _event(pki)
    raw = envelope.encode(event)[:-1] + b',"data2":1e400}'
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_ENVELOPE)
    assert "IEEE 754" in decision.detail


@pytest.mark.parametrize("name", ["homeaddress", "dataschema", "traceparent", "xgwother", "x"])
def test_an_attribute_outside_the_profile_is_refused(
    pipeline: Pipeline, pki: Pki, name: str
) -> None:
    """Signed or not, an attribute the profile does not define would reach every recipient."""
    event = _event(pki, **{name: "12 Lê Lợi, Phường Bến Nghé"})
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, str(event["subject"]).encode())
    _assert_refused(decision, raw, ReasonCode.UNKNOWN_ATTRIBUTE)
    assert name in decision.detail


def test_a_delivery_written_back_to_an_ingress_topic_is_a_reinjected_delivery(
    pipeline: Pipeline, pki: Pki
) -> None:
    event = _event(pki)
    accepted = _decide(pipeline, envelope.encode(event), str(event["subject"]).encode())
    (delivery,) = [o for o in accepted.outputs if o.topic == "xgw.deliver.land"]
    decision = _decide(pipeline, delivery.value, delivery.key or b"")
    _assert_refused(decision, delivery.value, ReasonCode.REINJECTED_DELIVERY)


def test_an_event_filed_under_another_person_is_a_subject_mismatch(
    pipeline: Pipeline, pki: Pki
) -> None:
    """The subject (and so the key) must be the digest of the data's personal_id."""
    other = subject_digest("079000000001")
    event = _event(pki, subject=other)
    raw = envelope.encode(event)
    _assert_refused(_decide(pipeline, raw, other.encode()), raw, ReasonCode.SUBJECT_MISMATCH)


def test_a_clear_personal_id_as_subject_is_refused_and_never_becomes_a_key(
    pipeline: Pipeline, pki: Pki
) -> None:
    event = _event(pki, subject="079190012345")
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, b"079190012345")
    _assert_refused(decision, raw, ReasonCode.SUBJECT_MISMATCH)
    for out in decision.outputs:
        if out.topic != "xgw.deadletter":  # operators only: the record as it came
            assert b"079190012345" not in out.value + (out.key or b"")


def test_requests_and_responses_are_bound_to_the_person_of_their_data(
    pipeline: Pipeline, pki: Pki
) -> None:
    """A request filed under another person, and an answer about another, are mismatches.

    The answer carries the request's subject, so only its data tells whom it is about.
    """
    forger = Forger(pki.keys)
    question = IdentityVerificationRequested(
        personal_id="079190012345", full_name="Nguyễn Văn An", date_of_birth="1990-05-17"
    )
    deadline = {profile.DEADLINE: rfc3339(NOW + timedelta(seconds=10))}
    other = subject_digest("079000000001")
    forged = forger.signed("land", question, now=NOW, attributes={**deadline, "subject": other})
    raw = envelope.encode(forged)
    _assert_refused(
        _decide(pipeline, raw, other.encode(), "land"), raw, ReasonCode.SUBJECT_MISMATCH, "land"
    )

    asked = forger.signed("land", question, now=NOW, attributes=deadline)
    assert _decide(pipeline, envelope.encode(asked), asked["subject"].encode(), "land").accepted
    answer = IdentityVerified(
        personal_id="079000000001", match=True, full_name_matches=True, date_of_birth_matches=True
    )
    reply = forger.signed(
        "police",
        answer,
        now=NOW,
        attributes={profile.CORRELATION_ID: asked["id"], "subject": asked["subject"]},
    )
    raw = envelope.encode(reply)
    decision = _decide(pipeline, raw, asked["subject"].encode())
    _assert_refused(decision, raw, ReasonCode.SUBJECT_MISMATCH)


def _with_carried_certificate(pki: Pki, change: Callable[[bytes], bytes]) -> bytes:
    """A police event whose x5c certificate (issued by the exchange CA) is changed as DER."""
    forger = Forger(pki.keys, pki.ca)
    event = forger.signed("police", make_resident(), now=NOW, key=forger.issue(NOW))
    protected, _, signature = event[profile.SIGNATURE].split(".")
    header = json.loads(b64url.decode(protected))
    der = change(base64.b64decode(header["x5c"][0]))
    thumbprint = b64url.encode(hashlib.sha256(der).digest())  # x5t#S256 names the changed one
    header |= {"x5c": [base64.b64encode(der).decode()], "x5t#S256": thumbprint, "kid": thumbprint}
    event[profile.SIGNATURE] = f"{b64url.encode(json.dumps(header).encode())}..{signature}"
    return envelope.encode(event)


def test_a_carried_certificate_with_an_unknown_version_is_refused_not_an_internal_error(
    pipeline: Pipeline, pki: Pki
) -> None:
    """Found by the fuzzer: cryptography raises InvalidVersion (not a ValueError) on load."""
    raw = _with_carried_certificate(
        pki, lambda der: der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    )
    decision = _decide(pipeline, raw, json.loads(raw)["subject"].encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_ENVELOPE)


def test_a_carried_certificate_with_an_unreadable_extension_is_refused(
    pipeline: Pipeline, pki: Pki
) -> None:
    """An extension cryptography reads only when it is used: refused, never an internal error."""

    def break_key_usage(der: bytes) -> bytes:
        at = der.index(b"\x06\x03\x55\x1d\x0f")  # the key usage OID
        bits = der.index(b"\x03\x02", at)
        return der[:bits] + b"\x05\x02" + der[bits + 2 :]

    raw = _with_carried_certificate(pki, break_key_usage)
    decision = _decide(pipeline, raw, json.loads(raw)["subject"].encode())
    assert decision.reason in {ReasonCode.UNTRUSTED_CERTIFICATE, ReasonCode.MALFORMED_ENVELOPE}
    _assert_refused(decision, raw, decision.reason)


def test_a_kid_that_is_not_the_certificate_thumbprint_is_an_unknown_signer(
    pipeline: Pipeline, pki: Pki
) -> None:
    key = dataclasses.replace(pki.keys["police"], kid="police-2026")
    event = Forger(pki.keys).signed("police", make_resident(), now=NOW, key=key)
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, event["subject"].encode())
    _assert_refused(decision, raw, ReasonCode.UNKNOWN_SIGNER)
    assert "kid" in decision.detail


@pytest.mark.parametrize(
    "moment",
    [
        NOW.strftime("%Y-%m-%d %H:%M:%SZ"),  # a space
        NOW.strftime("%Y%m%dT%H%M%SZ"),  # basic format
        NOW.strftime("%Y-%m-%dT%H:%MZ"),  # no seconds
        NOW.strftime("%Y-%m-%dT%H:%M:%S+0000"),  # offset without a colon
        NOW.strftime("%Y-%m-%dT%H:%M:%S"),  # no offset
        NOW.strftime("%G-W%V-%uT%H:%M:%SZ"),  # a week date
        NOW.strftime("%Y-%m-%dT%H:%M:%S,5Z"),  # a decimal comma
    ],
)
def test_a_time_that_is_iso_8601_but_not_rfc_3339_is_refused(
    pipeline: Pipeline, pki: Pki, moment: str
) -> None:
    """``time`` must be an RFC 3339 date-time; the wider ISO 8601 forms are refused."""
    event = _resigned(pki, {**_event(pki), "time": moment})
    raw = envelope.encode(event)
    decision = _decide(pipeline, raw, event["subject"].encode())
    _assert_refused(decision, raw, ReasonCode.MALFORMED_ENVELOPE)

    question = IdentityVerificationRequested(
        personal_id="079190012345", full_name="Nguyễn Văn An", date_of_birth="1990-05-17"
    )
    asked = Forger(pki.keys).signed(
        "land", question, now=NOW, attributes={profile.DEADLINE: moment}
    )
    raw = envelope.encode(asked)
    decision = _decide(pipeline, raw, asked["subject"].encode(), "land")
    _assert_refused(decision, raw, ReasonCode.BAD_DEADLINE, "land")


def test_a_deadline_is_bounded_from_the_gateways_receipt_time(pipeline: Pipeline, pki: Pki) -> None:
    """A request dated ahead within the clock skew cannot stretch its deadline past the bound."""
    question = IdentityVerificationRequested(
        personal_id="079190012345", full_name="Nguyễn Văn An", date_of_birth="1990-05-17"
    )
    ahead = NOW + timedelta(minutes=4)  # within the 5 minutes of skew
    limit = timedelta(
        seconds=pipeline._config.policy.request_rule(question.event_type).max_timeout_seconds
    )  # type: ignore[union-attr]
    asked = Forger(pki.keys).signed(
        "land", question, now=ahead, attributes={profile.DEADLINE: rfc3339(ahead + limit)}
    )
    raw = envelope.encode(asked)
    decision = _decide(pipeline, raw, asked["subject"].encode(), "land")
    _assert_refused(decision, raw, ReasonCode.BAD_DEADLINE, "land")
    assert "after the gateway received" in decision.detail
