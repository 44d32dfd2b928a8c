"""The CloudEvents profile: sealing, parsing, origin verification, projection and stamps."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import given

from gateway import names
from gateway.core import envelope, profile, stamp
from gateway.errors import Rejection
from gateway.reasons import ReasonCode
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.keys import SigningKey
from tests.conftest import NOW, Pki
from tests.support import stamping
from tests.support.strategies import event_data


def attributes(agency: str = "police", **changes: Any) -> dict[str, Any]:
    base = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": names.agency_source(agency),
        "type": "vn.hcm.police.resident_registered.v1",
        "subject": "sha256:abc",
        "time": "2026-11-25T09:30:00.000000Z",
        "datacontenttype": "application/json",
    }
    base.update(changes)
    return base


DATA = {"full_name": "Phạm Thị Thu Hà", "commune": "Phường Bến Nghé", "district": "Thủ Đức"}


def sealed(pki: Pki, data: dict[str, Any] | None = None, agency: str = "police") -> dict[str, Any]:
    return envelope.seal(attributes(agency), data or DATA, pki.keys[agency])


def roundtrip(event: dict[str, Any], *, delivered: bool = False) -> envelope.Envelope:
    return envelope.read_envelope(envelope.encode(event), delivered=delivered)


def reason_of(excinfo: pytest.ExceptionInfo[Rejection]) -> ReasonCode:
    return excinfo.value.reason


@given(event_data)
def test_sign_and_verify_round_trip_over_any_data(pki: Pki, data: dict[str, Any]) -> None:
    """Any JSON data, Vietnamese text included, survives seal, encode, parse and verify."""
    env = roundtrip(sealed(pki, data))
    signer, disclosures = envelope.verify_origin(env, pki.trust, NOW)
    assert signer.owner == "police"
    assert {name: d.value for name, d in disclosures.items()} == data


def test_signed_form_holds_digests_only(pki: Pki) -> None:
    """The signed data holds sorted digests, and no field value appears outside disclosures."""
    event = sealed(pki)
    assert set(event["data"]) == {"_sd", "_sd_alg"}
    assert event["data"]["_sd"] == sorted(event["data"]["_sd"])
    assert "Phạm" not in json.dumps(event["data"], ensure_ascii=False)


def test_subset_of_disclosures_still_verifies(pki: Pki) -> None:
    """A recipient given only some disclosures still verifies the origin signature."""
    event = sealed(pki)
    parts = sd.split(event[profile.DISCLOSURES])
    event[profile.DISCLOSURES] = sd.SEPARATOR.join(parts[:1])
    _, disclosures = envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert len(disclosures) == 1


def test_changed_attribute_breaks_signature(pki: Pki) -> None:
    """Changing any signed attribute after signing is a bad signature."""
    event = sealed(pki)
    event["subject"] = "sha256:someone-else"
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.BAD_SIGNATURE


def test_added_attribute_breaks_signature(pki: Pki) -> None:
    """An attribute of the profile added in transit is covered by the signature too."""
    event = sealed(pki)
    event[profile.CORRELATION_ID] = "added later"
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.BAD_SIGNATURE


def test_changed_disclosed_value_is_a_mismatch(pki: Pki) -> None:
    """A disclosure re-encoded with another value matches no signed digest."""
    event = sealed(pki)
    first = sd.parse(sd.split(event[profile.DISCLOSURES])[0])
    forged = sd.make(first.name, "Lê Văn Tám", salt=first.salt)
    event[profile.DISCLOSURES] = forged.encoded
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.DISCLOSURE_MISMATCH


def test_disclosure_from_another_event_is_a_mismatch(pki: Pki) -> None:
    """A disclosure copied from another event of the same agency is refused."""
    event, other = sealed(pki), sealed(pki, {"full_name": "Võ Thị Sáu"})
    event[profile.DISCLOSURES] = other[profile.DISCLOSURES]
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.DISCLOSURE_MISMATCH


def test_disclosure_given_twice_is_refused(pki: Pki) -> None:
    """The same disclosure twice is refused as a duplicate."""
    event = sealed(pki)
    first = sd.split(event[profile.DISCLOSURES])[0]
    event[profile.DISCLOSURES] += sd.SEPARATOR + first
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.DUPLICATE_DISCLOSURE


def test_clear_value_in_signed_data_is_refused(pki: Pki) -> None:
    """Signed data may hold only digests; a clear field is a malformed disclosure set."""
    event = sealed(pki)
    event["data"] = {**event["data"], "full_name": "Nguyễn Văn A"}
    with pytest.raises(Rejection) as excinfo:
        envelope.open_disclosures(roundtrip(event))
    assert reason_of(excinfo) is ReasonCode.MALFORMED_DISCLOSURE


def test_key_of_another_agency_is_refused(pki: Pki) -> None:
    """A valid signature by health's key on a police event is a signer/agency mismatch."""
    event = envelope.seal(attributes("police"), DATA, pki.keys["health"])
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.SIGNER_AGENCY_MISMATCH


def test_unknown_key_is_refused(pki: Pki) -> None:
    """A signature by a key the trust store does not hold names an unknown signer."""
    event = envelope.seal(attributes(), DATA, SigningKey.generate())
    with pytest.raises(Rejection) as excinfo:
        envelope.verify_origin(roundtrip(event), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.UNKNOWN_SIGNER


MALFORMED: list[tuple[str, Any, ReasonCode]] = [
    ("not json", lambda _: b"\x00garbage", ReasonCode.MALFORMED_ENVELOPE),
    (
        "not utf-8",
        lambda e: envelope.encode(e).decode().encode("utf-16"),
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    ("json array", lambda _: b"[1, 2]", ReasonCode.MALFORMED_ENVELOPE),
    (
        "duplicate key",
        lambda e: envelope.encode(e)[:-1] + b',"id":"other"}',
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    ("NaN", lambda e: envelope.encode(e)[:-1] + b',"n":NaN}', ReasonCode.MALFORMED_ENVELOPE),
    ("deep nesting", lambda _: b"[" * 100_000 + b"]" * 100_000, ReasonCode.JSON_TOO_DEEP),
    (
        "no specversion",
        lambda e: {k: v for k, v in e.items() if k != "specversion"},
        ReasonCode.MISSING_ATTRIBUTE,
    ),
    ("wrong specversion", lambda e: {**e, "specversion": "0.3"}, ReasonCode.MALFORMED_ENVELOPE),
    ("no id", lambda e: {k: v for k, v in e.items() if k != "id"}, ReasonCode.MISSING_ATTRIBUTE),
    ("empty id", lambda e: {**e, "id": ""}, ReasonCode.MISSING_ATTRIBUTE),
    ("long id", lambda e: {**e, "id": "x" * 300}, ReasonCode.MALFORMED_ENVELOPE),
    (
        "no time",
        lambda e: {k: v for k, v in e.items() if k != "time"},
        ReasonCode.MISSING_ATTRIBUTE,
    ),
    (
        "time without offset",
        lambda e: {**e, "time": "2026-11-25T09:30:00"},
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    ("time not a date", lambda e: {**e, "time": "hôm qua"}, ReasonCode.MALFORMED_ENVELOPE),
    (
        "xml content",
        lambda e: {**e, "datacontenttype": "application/xml"},
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    ("data not object", lambda e: {**e, "data": "text"}, ReasonCode.MALFORMED_ENVELOPE),
    ("upper-case attribute", lambda e: {**e, "Extra": "x"}, ReasonCode.MALFORMED_ENVELOPE),
    ("object attribute", lambda e: {**e, "extra": {"a": 1}}, ReasonCode.MALFORMED_ENVELOPE),
    (
        "source of no agency",
        lambda e: {**e, "source": "https://example.org"},
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    (
        "signature not JWS",
        lambda e: {**e, profile.SIGNATURE: "abc"},
        ReasonCode.MALFORMED_ENVELOPE,
    ),
    (
        "reserved purpose",
        lambda e: {**e, profile.PURPOSE: "anything"},
        ReasonCode.REINJECTED_DELIVERY,
    ),
    ("reserved stamp", lambda e: {**e, profile.STAMP: "a..b"}, ReasonCode.REINJECTED_DELIVERY),
    (
        "reserved stamp proof",
        lambda e: {**e, profile.STAMP_PROOF: "0.1"},
        ReasonCode.REINJECTED_DELIVERY,
    ),
    ("long attribute", lambda e: {**e, "note": "ư" * 20_000}, ReasonCode.STRING_TOO_LONG),
    (
        "alg none",
        lambda e: {**e, profile.SIGNATURE: _with_alg(e, "none")},
        ReasonCode.UNSUPPORTED_ALGORITHM,
    ),
    (
        "alg HS256",
        lambda e: {**e, profile.SIGNATURE: _with_alg(e, "HS256")},
        ReasonCode.UNSUPPORTED_ALGORITHM,
    ),
]


def _with_alg(event: dict[str, Any], alg: str) -> str:
    header, _, signature = event[profile.SIGNATURE].partition("..")
    decoded = json.loads(b64url.decode(header))
    return b64url.encode(json.dumps({**decoded, "alg": alg}).encode()) + ".." + signature


@pytest.mark.parametrize(("case", "breaker", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_structural_defects_are_refused(
    pki: Pki, case: str, breaker: Any, reason: ReasonCode
) -> None:
    """Each structural defect is refused for its own reason, with a detail and no crash."""
    broken = breaker(sealed(pki))
    raw = broken if isinstance(broken, bytes) else envelope.encode(broken)
    with pytest.raises(Rejection) as excinfo:
        envelope.read_envelope(raw)
    assert reason_of(excinfo) is reason, case
    assert excinfo.value.detail


def test_projection_keeps_origin_metadata_and_names_purpose(pki: Pki) -> None:
    """A projected delivery keeps id, source, type, subject, time and states its purpose."""
    env = roundtrip(sealed(pki))
    _, disclosures = envelope.verify_origin(env, pki.trust, NOW)
    delivered = envelope.project(
        env,
        [disclosures["full_name"]],
        recipient="health",
        purpose="health_insurance_enrolment",
        legal_basis="Law on Health Insurance",
    )
    for name in ("id", "source", "type", "subject", "time", profile.SIGNATURE):
        assert delivered[name] == env.attributes[name]
    assert delivered[profile.RECIPIENT] == "health"
    assert delivered[profile.PURPOSE] == "health_insurance_enrolment"
    redone = roundtrip(delivered, delivered=True)
    _, only = envelope.verify_origin(redone, pki.trust, NOW)
    assert set(only) == {"full_name"}


def test_stamp_verifies_and_detects_changes(pki: Pki) -> None:
    """The gateway stamp verifies, and any change to the delivered event breaks it."""
    stamped = stamping.stamp({**sealed(pki), profile.PURPOSE: "p"}, pki.gateway)
    assert stamp.verify_stamp(stamped, pki.trust, NOW).owner == "gateway"
    assert stamped[profile.STAMP_PROOF] == "0.1"  # one event: a tree of size 1
    with pytest.raises(Rejection) as excinfo:
        stamp.verify_stamp({**stamped, profile.PURPOSE: "other"}, pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.BAD_SIGNATURE


def test_stamp_by_an_agency_key_is_refused(pki: Pki) -> None:
    """Only the gateway's key may stamp a delivery."""
    stamped = stamping.stamp(sealed(pki), pki.keys["police"])
    with pytest.raises(Rejection) as excinfo:
        stamp.verify_stamp(stamped, pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.SIGNER_AGENCY_MISMATCH


def test_missing_stamp_is_refused(pki: Pki) -> None:
    """A delivery without a stamp is refused."""
    with pytest.raises(Rejection) as excinfo:
        stamp.verify_stamp(sealed(pki), pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.BAD_SIGNATURE


def test_origin_signature_cannot_serve_as_stamp(pki: Pki) -> None:
    """An origin signature moved into the stamp attribute is refused (wrong typ and signer)."""
    event = sealed(pki)
    event[profile.STAMP] = event[profile.SIGNATURE]
    with pytest.raises(Rejection) as excinfo:
        stamp.verify_stamp(event, pki.trust, NOW)
    assert reason_of(excinfo) is ReasonCode.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ("a" * 100, False),  # exactly the limit
        ("a" * 101, True),
        ("ư" * 100, False),  # 200 bytes of UTF-8, 100 characters: within the limit
        ("ư" * 101, True),
        ("\\" * 101, True),  # escaped in JSON: 202 bytes, 101 characters
    ],
)
def test_disclosed_text_is_limited_in_characters(pki: Pki, text: str, refused: bool) -> None:
    """The limit counts characters of decoded text, however long its JSON or base64url is."""
    limits = profile.Limits(max_string_chars=100)
    env = roundtrip(sealed(pki, {"address": {"street": text, "commune_name": "Phường Bến Nghé"}}))
    if not refused:
        assert envelope.open_disclosures(env, limits)["address"].value["street"] == text
        return
    with pytest.raises(Rejection) as excinfo:
        envelope.open_disclosures(env, limits)
    assert reason_of(excinfo) is ReasonCode.STRING_TOO_LONG
