"""The attack matrix: real records through the real broker and a real worker process.

Every case writes a real record, and must get its own reason code in a negative receipt, a
dead-letter record, no delivery to any agency, and the next valid event must still reach every
entitled agency.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from connectors.mock.people import vaccination
from connectors.transport import KafkaTransport
from gateway.core import envelope, profile
from gateway.reasons import ReasonCode
from gateway.trust import ca as pki
from gateway.wire import b64url
from gateway.wire import disclosure as sd
from gateway.wire.canonical import canonical_bytes
from gateway.wire.jws import sign_detached
from gateway.wire.keys import SigningKey
from schemas.police import ResidentRegistered
from tests.conftest import BrokerUnderTest, Pki, make_pki, make_resident
from tests.support import stamping
from tests.support.harness import Exchange, running_exchange, settings_on

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

RECIPIENTS = ("health", "education", "land")


@pytest.fixture(scope="module")
def own_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A PKI of this module's own, since its tests enrol and revoke certificates."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    any_broker: BrokerUnderTest, own_pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    settings = settings_on(
        any_broker,
        own_pki.directory,
        f"it{uuid.uuid4().hex[:8]}",
        max_record_bytes=64 * 1024,
        crl_refresh_seconds=0.2,
    )
    async with running_exchange(settings, own_pki, tmp_path_factory.mktemp("log")) as running:
        yield running


def someone() -> ResidentRegistered:
    return make_resident(personal_id=f"079190{uuid.uuid4().int % 10**6:06d}")


async def assert_rejected(
    exchange: Exchange, agency: str, raw: bytes, reason: ReasonCode, event_id: str | None
) -> None:
    receipt = await exchange.receipt_for(agency, raw, "rejected")
    assert receipt.reason == reason, receipt.detail
    digest = hashlib.sha256(raw).hexdigest().encode()
    dead = await exchange.wait_for(
        "dead letter",
        lambda: [
            m
            for m in exchange.dead_letters
            if m.value == raw or dict(m.headers).get("xgw-record-sha256") == digest
        ],
    )
    headers = dict(dead[0].headers)
    assert headers["xgw-reason"] == reason.value.encode()
    # A record over the size limit is not copied (the digest finds it in the ingress topic).
    assert dead[0].value == (b"" if "xgw-omitted" in headers else raw)
    follow_up = await exchange.clients["police"].publish(someone())
    for recipient in RECIPIENTS:
        await exchange.delivered(recipient, follow_up.id)
    if event_id is not None:
        for recipient in RECIPIENTS:
            assert event_id not in {e.id for e in exchange.deliveries[recipient]}


def event_id_of(raw: bytes) -> str | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value.get("id") if isinstance(value, dict) else None


async def test_police_event_reaches_each_entitled_agency(exchange: Exchange) -> None:
    """A signed police registration reaches health, education and land, each minimised."""
    resident = make_resident(full_name="Lê Thị Bến Nghé", personal_id="079190000777")
    published = await exchange.clients["police"].publish(resident)
    health = await exchange.delivered("health", published.id)
    assert health.data.full_name == "Lê Thị Bến Nghé"  # type: ignore[attr-defined]
    assert health.purpose == "health_insurance_enrolment"
    land = await exchange.delivered("land", published.id)
    assert land.fields == {"personal_id", "full_name"}
    education = await exchange.delivered("education", published.id)
    assert "sex" not in education.fields
    receipt = await exchange.receipt_for("police", published.record, "accepted")
    assert set(receipt.recipients) == set(RECIPIENTS)


MATRIX = [
    ReasonCode.RECORD_TOO_LARGE,
    ReasonCode.JSON_TOO_DEEP,
    ReasonCode.MALFORMED_ENVELOPE,
    ReasonCode.MISSING_ATTRIBUTE,
    ReasonCode.STRING_TOO_LONG,
    ReasonCode.SOURCE_TOPIC_MISMATCH,
    ReasonCode.RECORD_KEY_MISMATCH,
    ReasonCode.STALE_EVENT,
    ReasonCode.FUTURE_EVENT,
    ReasonCode.UNSUPPORTED_ALGORITHM,
    ReasonCode.UNKNOWN_SIGNER,
    ReasonCode.UNTRUSTED_CERTIFICATE,
    ReasonCode.WRONG_KEY_USAGE,
    ReasonCode.CERTIFICATE_NOT_YET_VALID,
    ReasonCode.CERTIFICATE_EXPIRED,
    ReasonCode.SIGNER_AGENCY_MISMATCH,
    ReasonCode.BAD_SIGNATURE,
    ReasonCode.MALFORMED_DISCLOSURE,
    ReasonCode.DISCLOSURE_MISMATCH,
    ReasonCode.DUPLICATE_DISCLOSURE,
    ReasonCode.UNKNOWN_TYPE,
    ReasonCode.UNAUTHORISED_PUBLISHER,
    ReasonCode.SCHEMA_VIOLATION,
    ReasonCode.BAD_DEADLINE,
    ReasonCode.UNAUTHORISED_REQUESTER,
    ReasonCode.WRONG_RESPONDER,
    ReasonCode.UNKNOWN_REQUEST,
    ReasonCode.UNKNOWN_ATTRIBUTE,
    ReasonCode.REINJECTED_DELIVERY,
    ReasonCode.SUBJECT_MISMATCH,
]


async def test_matrix_covers_every_forgeable_reason(exchange: Exchange) -> None:
    """The matrix below sends every kind of bad record the forger can make."""
    assert set(MATRIX) == set(exchange.forger.reasons())


@pytest.mark.parametrize("reason", MATRIX, ids=[r.value for r in MATRIX])
async def test_bad_record_is_rejected_and_the_stream_goes_on(
    exchange: Exchange, reason: ReasonCode
) -> None:
    """Each forged record gets its reason in a receipt and a dead letter; nothing is delivered."""
    forged = exchange.forger.forge(reason, someone(), datetime.now(UTC))
    await exchange.clients[forged.agency].send_raw(forged.value, key=forged.key)
    await assert_rejected(exchange, forged.agency, forged.value, reason, event_id_of(forged.value))


def _forged_signature(exchange: Exchange, model: ResidentRegistered, now: datetime) -> bytes:
    event = exchange.forger.signed("police", model, now=now)
    header = event[profile.SIGNATURE].split("..")[0]
    event[profile.SIGNATURE] = f"{header}..{b64url.encode(secrets.token_bytes(64))}"
    return envelope.encode(event)


def _copied_disclosure(exchange: Exchange, model: ResidentRegistered, now: datetime) -> bytes:
    event = exchange.forger.signed("police", model, now=now)
    other = exchange.forger.signed("police", someone(), now=now)
    mine = sd.split(event[profile.DISCLOSURES])
    theirs = {sd.parse(p).name: p for p in sd.split(other[profile.DISCLOSURES])}
    name = sd.parse(mine[0]).name
    event[profile.DISCLOSURES] = sd.SEPARATOR.join([theirs[name], *mine[1:]])
    return envelope.encode(event)


def _value_beside_digest(exchange: Exchange, model: ResidentRegistered, now: datetime) -> bytes:
    # The publisher signs a digest for full_name but withholds its disclosure and puts the
    # value in clear into the signed data instead.
    event = exchange.forger.signed("police", model, now=now)
    withheld = [sd.parse(p) for p in sd.split(event[profile.DISCLOSURES])]
    event["data"]["full_name"] = model.full_name
    event[profile.DISCLOSURES] = sd.join(d for d in withheld if d.name != "full_name")
    signed = {k: v for k, v in event.items() if k not in profile.UNSIGNED_ATTRIBUTES}
    event[profile.SIGNATURE] = sign_detached(canonical_bytes(signed), exchange.pki.keys["police"])
    return envelope.encode(event)


MORE_ATTACKS = [
    ("forged signature bytes", _forged_signature, ReasonCode.BAD_SIGNATURE),
    ("disclosure copied from another event", _copied_disclosure, ReasonCode.DISCLOSURE_MISMATCH),
    (
        "signed digest with the value offered as data",
        _value_beside_digest,
        ReasonCode.MALFORMED_DISCLOSURE,
    ),
]


@pytest.mark.parametrize(
    ("case", "build", "reason"), MORE_ATTACKS, ids=[a[0] for a in MORE_ATTACKS]
)
async def test_more_attacks_are_rejected(
    exchange: Exchange, case: str, build: Any, reason: ReasonCode
) -> None:
    """Attacks beside the one-per-reason matrix get their reason too, and nothing leaks."""
    model = someone()
    raw = build(exchange, model, datetime.now(UTC))
    await exchange.clients["police"].send_raw(raw, key=json.loads(raw)["subject"].encode())
    receipt = await exchange.receipt_for("police", raw, "rejected")
    assert receipt.reason == reason, f"{case}: {receipt.detail}"
    await assert_rejected(exchange, "police", raw, reason, event_id_of(raw))


async def test_replayed_event_is_rejected_as_duplicate(exchange: Exchange) -> None:
    """Writing an accepted event's bytes again is refused with duplicate_id."""
    police = exchange.clients["police"]
    published = await police.publish(someone())
    await exchange.receipt_for("police", published.record, "accepted")
    await police.send_raw(published.record, key=published.subject.encode())
    await assert_rejected(exchange, "police", published.record, ReasonCode.DUPLICATE_ID, None)
    assert len([e for e in exchange.deliveries["health"] if e.id == published.id]) == 1


async def test_unrouted_event_is_rejected_with_no_recipients(exchange: Exchange) -> None:
    """A vaccination (registered type, no route yet) is refused with no_recipients."""
    event = vaccination(random.Random(3), make_resident(), datetime.now(UTC).date())
    published = await exchange.clients["health"].publish(event)
    await assert_rejected(
        exchange, "health", published.record, ReasonCode.NO_RECIPIENTS, published.id
    )


async def test_certificate_revoked_while_the_worker_runs(exchange: Exchange) -> None:
    """A certificate that worked is refused as soon as the worker has seen the new CRL."""
    directory: Path = exchange.pki.directory
    info = pki.enroll(directory, "police")
    key = pki.load_signing_key(directory, "police", embed=True)
    assert key.x5t == info.fingerprint
    client = exchange.client("police", key)
    before = await client.publish(someone())
    await exchange.receipt_for("police", before.record, "accepted")
    reloads = await exchange.metric("xgw_crl_reloads_total{}")
    pki.revoke(directory, info.serial)
    await _wait_metric_above(exchange, "xgw_crl_reloads_total{}", reloads)
    after = await client.publish(someone())
    await assert_rejected(
        exchange, "police", after.record, ReasonCode.REVOKED_CERTIFICATE, after.id
    )


async def _wait_metric_above(exchange: Exchange, name: str, value: float) -> None:
    for _ in range(200):
        if await exchange.metric(name) > value:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{name} did not grow past {value}")


async def test_rotation_accepts_both_valid_certificates(exchange: Exchange) -> None:
    """During a changeover, events signed with the old and the new certificate both verify."""
    directory: Path = exchange.pki.directory
    old_key: SigningKey = exchange.pki.keys["police"]
    known = await exchange.metric("xgw_known_certificates{}")
    pki.enroll(directory, "police")
    new_key = pki.load_signing_key(directory, "police")  # named by x5t#S256 only, not carried
    assert new_key.x5t != old_key.x5t
    await _wait_metric_above(exchange, "xgw_known_certificates{}", known)
    old = await exchange.clients["police"].publish(someone())
    new = await exchange.client("police", new_key).publish(someone())
    for published in (old, new):
        await exchange.receipt_for("police", published.record, "accepted")
        await exchange.delivered("health", published.id)


async def test_client_refuses_a_forged_gateway_stamp(exchange: Exchange) -> None:
    """A delivery stamped by anyone but the gateway, written straight to the topic, is refused."""
    published = await exchange.clients["police"].publish(someone())
    genuine = await exchange.delivered("health", published.id)
    forged_event = exchange.forger.signed("police", someone(), now=datetime.now(UTC))
    delivery = stamping.stamp(
        envelope.project(
            envelope.read_envelope(envelope.encode(forged_event)),
            [],
            recipient="health",
            purpose="health_insurance_enrolment",
            legal_basis="none",
        ),
        exchange.pki.keys["police"],  # a valid key, but not the gateway's
    )
    health = exchange.clients["health"]
    refused_before = health.refused.get(ReasonCode.SIGNER_AGENCY_MISMATCH, 0)
    transport = KafkaTransport(exchange.settings.kafka_options())
    await transport.send(
        exchange.settings.topics.deliver("health"),
        envelope.encode(delivery),
        key=forged_event["subject"].encode(),
    )
    await transport.close()
    await exchange.wait_for(
        "the client to refuse the forged stamp",
        lambda: health.refused.get(ReasonCode.SIGNER_AGENCY_MISMATCH, 0) > refused_before,
    )
    assert forged_event["id"] not in {e.id for e in exchange.deliveries["health"]}
    assert genuine.id == published.id
    follow_up = await exchange.clients["police"].publish(someone())
    await exchange.delivered("health", follow_up.id)


async def test_metrics_count_rejections_by_reason(exchange: Exchange) -> None:
    """The worker's rejection counter for a reason grows by one per rejected record."""
    name = "xgw_messages_rejected_total{agency=police,reason=unknown_type,type=unknown}"
    before = await exchange.metric(name)
    forged = exchange.forger.forge(ReasonCode.UNKNOWN_TYPE, someone(), datetime.now(UTC))
    await exchange.clients["police"].send_raw(forged.value, key=forged.key)
    await exchange.receipt_for("police", forged.value, "rejected")
    assert await exchange.metric(name) == before + 1
