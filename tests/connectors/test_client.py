"""The agency client over the in-memory transport, with the real pipeline in between."""

from __future__ import annotations

import asyncio
import contextlib
import json
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from connectors.client import AgencyClient
from connectors.errors import InvalidEventError, RequestRefused, RequestTimedOut
from connectors.mock import people
from connectors.transport import MemoryTransport
from gateway.core import envelope, profile
from gateway.core.envelope import subject_digest
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.core.policy import Policy
from gateway.errors import ConfigError, Rejection
from gateway.names import GATEWAY_OWNER
from gateway.reasons import ReasonCode
from gateway.settings import Settings
from gateway.trust.ca import enroll, load_signing_key
from gateway.wire import disclosure as sd
from gateway.wire.keys import SigningKey
from schemas.police import IdentityVerificationRequested, IdentityVerified, ResidentRegistered
from tests.conftest import NOW, Pki, make_pipeline, make_pki, make_resident
from tests.support import stamping

T = TypeVar("T")


def client(pki: Pki, transport: MemoryTransport, agency: str, **options: Any) -> AgencyClient:
    return AgencyClient(
        agency=agency,
        signing_key=pki.keys[agency],
        trust=pki.trust,
        transport=transport,
        clock=lambda: NOW,
        **options,
    )


def run_gateway(pipeline: Pipeline, transport: MemoryTransport, now: datetime = NOW) -> None:
    """Decide every ingress record once at ``now`` and append the outputs, as a worker would."""
    for topic in [t for t in list(transport.logs) if t.startswith("xgw.ingress.")]:
        for message in list(transport.logs[topic]):
            rec = IngressRecord(topic, 0, message.offset, message.key, message.value)
            for out in pipeline.decide(rec, now).outputs:
                transport.logs[out.topic].append(
                    type(message)(out.topic, 0, len(transport.logs[out.topic]), out.key, out.value)
                )
        transport.logs[topic].clear()


# Only bounds a failing test.
TAKE_S = 15


async def take(stream: AsyncIterator[T], count: int) -> list[T]:
    items: list[T] = []
    async with asyncio.timeout(TAKE_S), contextlib.aclosing(stream):  # type: ignore[type-var]
        async for item in stream:
            items.append(item)
            if len(items) == count:
                break
    return items


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


async def test_health_receives_a_typed_minimised_view(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """Health gets a typed view holding exactly its granted fields, verified end to end."""
    published = await client(pki, transport, "police").publish(resident)
    run_gateway(pipeline, transport)
    (event,) = await take(client(pki, transport, "health").subscribe(), 1)
    assert event.id == published.id
    assert event.subject == subject_digest(resident.personal_id)
    assert event.purpose == "health_insurance_enrolment"
    assert event.fields == {"personal_id", "full_name", "date_of_birth", "sex", "permanent_address"}
    assert event.data.full_name == "Nguyễn Thị Minh Khai"  # type: ignore[attr-defined]
    assert not hasattr(event.data, "registered_on")


async def test_land_sees_only_name_and_id(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """Land's view of a registration has the personal id and name and nothing else."""
    await client(pki, transport, "police").publish(resident)
    run_gateway(pipeline, transport)
    (event,) = await take(client(pki, transport, "land").subscribe(), 1)
    assert event.data.model_dump() == {
        "personal_id": resident.personal_id,
        "full_name": resident.full_name,
    }


async def test_decomposed_name_is_published_in_nfc(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport
) -> None:
    """A name typed with combining marks (NFD) is signed and delivered in NFC."""
    nfd = unicodedata.normalize("NFD", "Trần Thủ Đức")
    await client(pki, transport, "police").publish(make_resident(full_name=nfd, sex="female"))
    (raw,) = transport.logs["xgw.ingress.police"]
    names = [
        d.value
        for d in map(sd.parse, sd.split(json.loads(raw.value)[profile.DISCLOSURES]))
        if d.name == "full_name"
    ]
    assert names == ["Trần Thủ Đức"]
    assert unicodedata.is_normalized("NFC", names[0])
    run_gateway(pipeline, transport)
    (event,) = await take(client(pki, transport, "health").subscribe(), 1)
    assert event.data.full_name == unicodedata.normalize("NFC", nfd)  # type: ignore[attr-defined]


async def test_invalid_model_is_not_published(pki: Pki, transport: MemoryTransport) -> None:
    """A model bypassing validation is re-validated and refused with the field named."""
    bad = ResidentRegistered.model_construct(**{**dict(make_resident()), "sex": "unknown"})
    with pytest.raises(InvalidEventError, match="sex"):
        await client(pki, transport, "police").publish(bad)
    assert transport.logs["xgw.ingress.police"] == []


async def test_an_event_over_the_record_limit_is_refused_before_it_is_sent(
    pki: Pki, transport: MemoryTransport
) -> None:
    """The signed size is checked against the gateway's limit: one clear error, nothing sent."""
    small = client(pki, transport, "police", max_record_bytes=1500)
    with pytest.raises(InvalidEventError, match=r"bytes, over the exchange's limit of 1500"):
        await small.publish(make_resident())
    assert transport.logs["xgw.ingress.police"] == []


def _tamper(
    transport: MemoryTransport, topic: str, change: Any, restamp: SigningKey | None
) -> None:
    message = transport.logs[topic][0]
    event = json.loads(message.value)
    change(event)
    if restamp is not None:
        event = stamping.stamp(event, restamp)
    transport.logs[topic][0] = type(message)(
        topic, 0, 0, message.key, envelope.encode(event), message.headers
    )


def _swap_value(event: dict[str, Any]) -> None:
    parts = [sd.parse(p) for p in sd.split(event[profile.DISCLOSURES])]
    parts[0] = sd.make(parts[0].name, "Hồ Văn Giả", salt=parts[0].salt)
    event[profile.DISCLOSURES] = sd.join(parts)


def _swap_with_other_event(event: dict[str, Any]) -> None:
    other = envelope.seal(
        {k: event[k] for k in ("specversion", "id", "source", "type", "subject", "time")},
        {"full_name": "Hồ Văn Giả"},
        SigningKey.generate(),
    )
    event[profile.DISCLOSURES] = other[profile.DISCLOSURES]


# (case, change, re-stamped by the gateway key?, expected reason). Re-stamped cases stand for a
# compromised gateway: the stamp verifies, so only the origin checks can catch the change.
TAMPERINGS = [
    ("stamp removed", lambda e: e.pop(profile.STAMP), False, ReasonCode.BAD_SIGNATURE),
    (
        "purpose changed",
        lambda e: e.update({profile.PURPOSE: "x"}),
        False,
        ReasonCode.BAD_SIGNATURE,
    ),
    ("disclosed value changed", _swap_value, False, ReasonCode.BAD_SIGNATURE),
    ("gateway changes a value", _swap_value, True, ReasonCode.DISCLOSURE_MISMATCH),
    ("gateway swaps disclosures", _swap_with_other_event, True, ReasonCode.DISCLOSURE_MISMATCH),
    (
        "gateway changes the time",
        lambda e: e.update({"time": "2020-01-01T00:00:00Z"}),
        True,
        ReasonCode.BAD_SIGNATURE,
    ),
]


@pytest.mark.parametrize(
    ("case", "change", "restamp", "reason"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS]
)
async def test_tampered_delivery_is_refused(
    pki: Pki,
    pipeline: Pipeline,
    transport: MemoryTransport,
    resident: ResidentRegistered,
    case: str,
    change: Any,
    restamp: bool,
    reason: ReasonCode,
) -> None:
    """A changed delivery is refused and counted, even when the gateway itself re-stamped it."""
    police, health = client(pki, transport, "police"), client(pki, transport, "health")
    await police.publish(resident)
    second = await police.publish(make_resident(personal_id="079190054321"))
    run_gateway(pipeline, transport)
    _tamper(transport, "xgw.deliver.health", change, pki.gateway if restamp else None)
    (event,) = await take(health.subscribe(), 1)
    assert event.id == second.id, case
    assert health.refused == {reason: 1}


async def test_delivery_for_another_agency_is_refused(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """Education's delivery copied into health's topic is refused by health's client."""
    await client(pki, transport, "police").publish(resident)
    run_gateway(pipeline, transport)
    transport.logs["xgw.deliver.health"] = list(transport.logs["xgw.deliver.education"])
    health = client(pki, transport, "health")
    await client(pki, transport, "police").publish(make_resident(personal_id="079190054321"))
    run_gateway(pipeline, transport)
    (event,) = await take(health.subscribe(), 1)
    assert event.data.personal_id == "079190054321"  # type: ignore[attr-defined]
    assert health.refused == {ReasonCode.MALFORMED_ENVELOPE: 1}


async def test_repeated_delivery_is_yielded_once(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """At-least-once repeats of a delivery reach the application once."""
    police = client(pki, transport, "police")
    await police.publish(resident)
    run_gateway(pipeline, transport)
    transport.logs["xgw.deliver.health"].append(transport.logs["xgw.deliver.health"][0])
    last = await police.publish(make_resident(personal_id="079190054321"))
    run_gateway(pipeline, transport)
    events = await take(client(pki, transport, "health").subscribe(), 2)
    assert [e.id for e in events][-1] == last.id
    assert len({e.id for e in events}) == 2


async def test_receipts_report_acceptance_and_rejection(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """The police read one accepted and one rejected (duplicate) receipt, both verified."""
    police = client(pki, transport, "police")
    published = await police.publish(resident)
    await police.send_raw(published.record, key=published.subject.encode())
    run_gateway(pipeline, transport)
    receipts = await take(police.receipts(), 2)
    assert [r.status for r in receipts] == ["accepted", "rejected"]
    assert receipts[1].reason == ReasonCode.DUPLICATE_ID
    assert all(r.event_id == published.id for r in receipts)


async def test_a_receipt_copied_to_another_agencys_topic_is_refused(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """The receipt names its addressee under the stamp: health refuses the police's receipt."""
    police, health = client(pki, transport, "police"), client(pki, transport, "health")
    await police.publish(resident)
    run_gateway(pipeline, transport)
    (original,) = transport.logs["xgw.receipts.police"]
    assert json.loads(original.value)[profile.RECIPIENT] == "police"
    await transport.send("xgw.receipts.health", original.value)
    # Rewriting the addressee breaks the stamp instead.
    moved = {**json.loads(original.value), profile.RECIPIENT: "health"}
    await transport.send("xgw.receipts.health", json.dumps(moved).encode())
    with pytest.raises(TimeoutError):
        await take(health.receipts(), 1)
    assert health.refused == {ReasonCode.MALFORMED_ENVELOPE: 1, ReasonCode.BAD_SIGNATURE: 1}
    (receipt,) = await take(police.receipts(), 1)
    assert receipt.accepted


async def test_a_stamp_by_a_rotated_gateway_key_verifies_from_its_own_certificate(
    tmp_path: Path, policy: Policy, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """A stamp by a gateway key newer than the client's trust store verifies (x5c).

    The stamp carries the gateway's certificate, so the client validates it against the
    exchange root itself and needs no new copy of the PKI folder after a rotation.
    """
    exchange = make_pki(tmp_path)
    enroll(tmp_path, GATEWAY_OWNER, now=NOW - timedelta(minutes=30))
    rotated = load_signing_key(tmp_path, GATEWAY_OWNER, embed=True, at=NOW)
    assert rotated.kid != exchange.gateway.kid
    with pytest.raises(Rejection):  # the client's store has never seen the new certificate
        exchange.trust.resolve({"kid": rotated.kid, "x5t#S256": rotated.kid}, NOW)
    pipeline = make_pipeline(
        replace(exchange, keys={**exchange.keys, GATEWAY_OWNER: rotated}), policy
    )
    await client(exchange, transport, "police").publish(resident)
    run_gateway(pipeline, transport)
    (event,) = await take(client(exchange, transport, "health").subscribe(), 1)
    assert event.id
    (receipt,) = await take(client(exchange, transport, "police").receipts(), 1)
    assert receipt.accepted


async def test_unstamped_receipt_is_refused(pki: Pki, transport: MemoryTransport) -> None:
    """A receipt not stamped by the gateway is refused."""
    police = client(pki, transport, "police")
    fake = {"type": "vn.hcm.xgw.receipt.v1", "data": {"status": "accepted"}, "id": "x"}
    await transport.send("xgw.receipts.police", json.dumps(fake).encode())
    await transport.send("xgw.receipts.police", b"not json")
    stream = police.receipts()
    with pytest.raises(TimeoutError):
        await take(stream, 1)
    assert police.refused == {ReasonCode.BAD_SIGNATURE: 1, ReasonCode.MALFORMED_ENVELOPE: 1}


def test_fake_residents_are_valid_and_vietnamese() -> None:
    """The mock register produces valid residents with Vietnamese diacritics in their names."""
    import random  # noqa: PLC0415
    from datetime import date  # noqa: PLC0415

    rng = random.Random(7)
    residents = [people.resident(rng, date(2026, 11, 25)) for _ in range(500)]
    assert any(not r.full_name.isascii() for r in residents)
    assert len({r.personal_id for r in residents}) == 500


# --- request/reply ---------------------------------------------------------------------------

QUESTION = IdentityVerificationRequested(
    personal_id="079190012345", full_name="Nguyễn Thị Minh Khai", date_of_birth=date(1990, 5, 17)
)


async def _gateway_loop(pipeline: Pipeline, transport: MemoryTransport, expire: bool) -> None:
    """Decide new ingress records as they come (and time requests out when asked)."""
    done: dict[str, int] = {}
    while True:
        for topic in [t for t in list(transport.logs) if t.startswith("xgw.ingress.")]:
            for message in transport.logs[topic][done.get(topic, 0) :]:
                rec = IngressRecord(topic, 0, message.offset, message.key, message.value)
                for out in pipeline.decide(rec, NOW).outputs:
                    assert out.value is not None
                    await transport.send(out.topic, out.value, key=out.key)
                done[topic] = message.offset + 1
        if expire:
            for decision in pipeline.expire(NOW + timedelta(hours=1)):
                for out in decision.outputs:
                    assert out.value is not None
                    await transport.send(out.topic, out.value, key=out.key)
        await asyncio.sleep(0.01)


async def _answer_once(police: AgencyClient) -> None:
    async for request in police.subscribe():
        await police.respond(
            request,
            IdentityVerified(
                personal_id=request.data.personal_id,  # type: ignore[attr-defined]
                match=True,
                full_name_matches=True,
                date_of_birth_matches=True,
            ),
        )
        return


async def test_request_is_answered_to_the_requester_only(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport
) -> None:
    """Land's question reaches police; police's answer comes back to land's request() call."""
    land, police = client(pki, transport, "land"), client(pki, transport, "police")
    tasks = [
        asyncio.create_task(_gateway_loop(pipeline, transport, expire=False)),
        asyncio.create_task(_answer_once(police)),
    ]
    try:
        answer = await land.request(QUESTION, timeout=5)
    finally:
        for task in tasks:
            task.cancel()
        await land.close()
    assert answer.type == "vn.hcm.police.identity_verified.v1"
    assert answer.correlation_id is not None
    assert answer.purpose == "land_owner_identity"
    assert answer.data.match is True  # type: ignore[attr-defined]
    assert answer.fields == {"personal_id", "match", "full_name_matches", "date_of_birth_matches"}
    assert transport.logs["xgw.deliver.education"] == []


async def test_unanswered_request_times_out_with_the_gateways_receipt(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport
) -> None:
    """No answer: the gateway's timeout receipt ends the wait with RequestTimedOut."""
    land = client(pki, transport, "land")
    loop = asyncio.create_task(_gateway_loop(pipeline, transport, expire=True))
    try:
        with pytest.raises(RequestTimedOut, match="no response before the deadline"):
            await land.request(QUESTION, timeout=30)
    finally:
        loop.cancel()
        await land.close()


async def test_request_by_an_agency_without_a_purpose_is_refused(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport
) -> None:
    """Health may not ask identity questions: the negative receipt raises RequestRefused."""
    health = client(pki, transport, "health")
    loop = asyncio.create_task(_gateway_loop(pipeline, transport, expire=False))
    try:
        with pytest.raises(RequestRefused) as refused:
            await health.request(QUESTION, timeout=5)
    finally:
        loop.cancel()
        await health.close()
    assert refused.value.reason is ReasonCode.UNAUTHORISED_REQUESTER


async def test_respond_checks_the_answer_fits_the_request(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """An answer of another type, or about another person, is not sent."""
    await client(pki, transport, "police").publish(resident)
    run_gateway(pipeline, transport)
    land = client(pki, transport, "land")
    (registration,) = await take(land.subscribe(), 1)
    answer = IdentityVerified(
        personal_id=resident.personal_id,
        match=True,
        full_name_matches=True,
        date_of_birth_matches=True,
    )
    with pytest.raises(InvalidEventError, match="does not answer"):
        await land.respond(registration, answer)


async def test_a_client_from_settings_loads_the_agency_key_and_the_trust_store(
    pki: Pki, pipeline: Pipeline, transport: MemoryTransport, resident: ResidentRegistered
) -> None:
    """``from_settings`` signs with the agency's enrolled key and verifies with the PKI's CRL."""
    settings = Settings(pki_dir=pki.directory)
    police = AgencyClient.from_settings("police", settings, transport=transport)
    health = AgencyClient.from_settings("health", settings, transport=transport)
    assert police.agency == "police"
    published = await police.publish(resident)
    # A client from settings stamps with the real clock, so the gateway decides at the real time:
    # NOW is fixed when the suite starts, and after five minutes of suite the event would be
    # "from the future" (max_clock_skew).
    run_gateway(pipeline, transport, datetime.now(UTC))
    (event,) = await take(health.subscribe(), 1)
    assert (event.id, event.source_agency) == (published.id, "police")


def test_a_client_from_settings_names_the_command_when_the_agency_has_no_key(
    pki: Pki, transport: MemoryTransport
) -> None:
    settings = Settings(pki_dir=pki.directory)
    with pytest.raises(ConfigError, match="xgw pki enroll tax"):
        AgencyClient.from_settings("tax", settings, transport=transport)
