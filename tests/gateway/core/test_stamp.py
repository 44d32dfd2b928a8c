"""The batch stamp: an RFC 9162 hash tree signed once, and each event's inclusion proof."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.client import AgencyClient
from connectors.errors import RefusedDelivery
from connectors.transport import MemoryTransport
from gateway import names
from gateway.core import envelope, profile, stamp
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.core.records import RECEIPT_TYPE
from gateway.errors import Rejection
from gateway.lab.forgery import Forger
from gateway.reasons import ReasonCode
from gateway.wire import b64url, merkle
from gateway.wire.jws import sign_detached
from tests.conftest import NOW, Pki, make_resident
from tests.support import stamping

Event = dict[str, Any]


def _mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 Merkle Tree Hash, written from the definition (a reference)."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(leaves[:k]) + _mth(leaves[k:])).digest()


def _events(count: int, tag: str = "a") -> list[Event]:
    return [
        {"specversion": "1.0", "id": f"{tag}-{i}", "source": names.GATEWAY_SOURCE, "n": i}
        for i in range(count)
    ]


def _parts(event: Event) -> list[str]:
    return str(event[profile.STAMP_PROOF]).split(".")


def _with_proof(event: Event, parts: list[str]) -> Event:
    return {**event, profile.STAMP_PROOF: ".".join(parts)}


def _refused(event: Event, pki: Pki) -> str:
    with pytest.raises(Rejection) as excinfo:
        stamp.verify_stamp(event, pki.trust, NOW)
    assert excinfo.value.reason is ReasonCode.BAD_SIGNATURE, excinfo.value.detail
    return excinfo.value.detail


@pytest.mark.parametrize("size", range(1, 18))
def test_every_inclusion_proof_of_small_trees_verifies(size: int) -> None:
    """For trees of 1..17 leaves, the root is RFC 9162's and every audit path leads to it."""
    data = [f"leaf {i}".encode() for i in range(size)]
    leaves = [merkle.leaf_hash(d) for d in data]
    root, paths = merkle.merkle_tree(leaves)
    assert root == _mth(data)
    for index, path in enumerate(paths):
        proof = stamping.encode_proof(index, size, path)
        assert merkle.decode_proof(proof) == (index, size, path)
        assert merkle.root_from_path(leaves[index], index, size, path) == root
        for other in (i for i in range(size + 1) if i != index):
            try:
                elsewhere = merkle.root_from_path(leaves[index], other, size, path)
            except ValueError:
                continue  # outside the tree, or a path of another length
            assert elsewhere != root


@pytest.mark.parametrize("size", range(1, 18))
def test_every_stamped_event_of_a_batch_verifies(pki: Pki, size: int) -> None:
    """stamp_many signs once, and every event of the batch verifies with its own proof."""
    stamped = stamping.stamp_many(_events(size), pki.gateway)
    assert len({e[profile.STAMP] for e in stamped}) == 1
    for index, event in enumerate(stamped):
        assert _parts(event)[:2] == [str(index), str(size)]
        assert stamp.verify_stamp(event, pki.trust, NOW).owner == "gateway"


def test_a_single_stamp_is_a_tree_of_one(pki: Pki) -> None:
    """stamp() gives the proof '0.1' (empty path) and a JWS over the event's leaf hash."""
    (event,) = _events(1)
    stamped = stamping.stamp(event, pki.gateway)
    assert stamped[profile.STAMP_PROOF] == "0.1"
    header = json.loads(b64url.decode(stamped[profile.STAMP].split(".")[0]))
    assert header["typ"] == stamp.STAMP_TYP
    assert header["xgw"] == {"tree": "rfc9162-sha256", "size": 1}
    assert header["crit"] == ["xgw"]
    assert header["alg"] == "Ed25519"
    assert header["x5c"] == list(pki.gateway.x5c)
    restamped = stamping.stamp(stamped, pki.gateway)
    assert restamped == stamped  # the old stamp is not part of the leaf


TAMPERS: list[tuple[str, Callable[[Event, Event], Event]]] = [
    ("leaf event field", lambda e, _: {**e, "n": 99}),
    ("added attribute", lambda e, _: {**e, "extra": "x"}),
    (
        "sibling hash",
        lambda e, _: _with_proof(e, [*_parts(e)[:2], b64url.encode(bytes(32)), *_parts(e)[3:]]),
    ),
    ("index", lambda e, _: _with_proof(e, ["1", *_parts(e)[1:]])),
    ("index past the end", lambda e, _: _with_proof(e, ["5", *_parts(e)[1:]])),
    ("size", lambda e, _: _with_proof(e, [_parts(e)[0], "4", *_parts(e)[2:]])),
    ("size, path cut", lambda e, _: _with_proof(e, [_parts(e)[0], "2", _parts(e)[2]])),
    ("path too short", lambda e, _: _with_proof(e, _parts(e)[:-1])),
    ("path too long", lambda e, _: _with_proof(e, [*_parts(e), _parts(e)[2]])),
    (
        "root signature",
        lambda e, _: {**e, profile.STAMP: e[profile.STAMP][:-4] + "AAAA"},
    ),
    (
        "stamp moved to another batch's event",
        lambda e, other: {**other, profile.STAMP: e[profile.STAMP]},
    ),
    (
        "stamp and proof moved to another batch's event",
        lambda e, other: {
            **other,
            profile.STAMP: e[profile.STAMP],
            profile.STAMP_PROOF: e[profile.STAMP_PROOF],
        },
    ),
    ("proof missing", lambda e, _: {k: v for k, v in e.items() if k != profile.STAMP_PROOF}),
    ("proof not text", lambda e, _: {**e, profile.STAMP_PROOF: 0}),
    ("leading zero", lambda e, _: _with_proof(e, ["00", *_parts(e)[1:]])),
    ("signed index", lambda e, _: _with_proof(e, ["+0", *_parts(e)[1:]])),
    ("size zero", lambda e, _: _with_proof(e, ["0", "0"])),
    ("huge size", lambda e, _: _with_proof(e, ["0", str(2**40), *_parts(e)[2:]])),
    ("empty proof", lambda e, _: _with_proof(e, [""])),
    (
        "padded hash",
        lambda e, _: _with_proof(e, [*_parts(e)[:2], _parts(e)[2] + "=", *_parts(e)[3:]]),
    ),
    (
        "non-canonical trailing bits",
        lambda e, _: _with_proof(e, [*_parts(e)[:2], _parts(e)[2][:-1] + "B", *_parts(e)[3:]]),
    ),
    ("short hash", lambda e, _: _with_proof(e, [*_parts(e)[:2], "AAAA", *_parts(e)[3:]])),
    ("standard alphabet", lambda e, _: _with_proof(e, [*_parts(e)[:2], "+" * 43, *_parts(e)[3:]])),
]


@pytest.mark.parametrize("tamper", [t for _, t in TAMPERS], ids=[n for n, _ in TAMPERS])
def test_each_tampered_part_is_refused(pki: Pki, tamper: Callable[[Event, Event], Event]) -> None:
    """Changing the event, a sibling, the index, the size, the signature or the batch fails."""
    batch = stamping.stamp_many(_events(3), pki.gateway)
    other = stamping.stamp_many(_events(3, "b"), pki.gateway)
    event = batch[0]  # proof "0.3.<h1>.<h2>": two siblings
    assert stamp.verify_stamp(event, pki.trust, NOW)
    _refused(tamper(event, other[1]), pki)


def test_header_must_sign_the_tree_and_its_size(pki: Pki) -> None:
    """A stamp JWS without the tree parameter, or naming another tree, is refused."""
    (event,) = _events(1)
    leaf = stamp.leaf(event).hash
    for extra in (
        {"typ": stamp.STAMP_TYP, "crit": ["xgw"], "xgw": {"tree": "x", "size": 1}},
        {"typ": stamp.STAMP_TYP, "crit": ["xgw"], "xgw": {"tree": "rfc9162-sha256"}},
        {"typ": stamp.STAMP_TYP, "crit": ["xgw"], "xgw": {"tree": "rfc9162-sha256", "size": "1"}},
    ):
        token = sign_detached(leaf, pki.gateway, extra)
        detail = _refused({**event, profile.STAMP: token, profile.STAMP_PROOF: "0.1"}, pki)
        assert "must name the tree" in detail


@pytest.mark.parametrize(
    "extra",
    [
        {"typ": stamp.STAMP_TYP},
        {"typ": stamp.STAMP_TYP, "xgw": {"tree": "rfc9162-sha256", "size": 1}},
        {"typ": stamp.STAMP_TYP, "crit": [], "xgw": {"tree": "rfc9162-sha256", "size": 1}},
        {"typ": stamp.STAMP_TYP, "crit": ["typ"], "xgw": {"tree": "rfc9162-sha256", "size": 1}},
    ],
)
def test_the_tree_must_be_declared_critical(pki: Pki, extra: dict[str, object]) -> None:
    """RFC 7515 4.1.11: a stamp whose header does not list "xgw" in crit is refused.

    A library that ignores unknown parameters would otherwise skip the signed tree size.
    """
    (event,) = _events(1)
    token = sign_detached(stamp.leaf(event).hash, pki.gateway, extra)
    detail = _refused({**event, profile.STAMP: token, profile.STAMP_PROOF: "0.1"}, pki)
    assert "crit" in detail


def test_a_publisher_may_not_set_the_proof(pki: Pki) -> None:
    """The proof attribute is reserved for the gateway, and outside the origin's signed form."""
    event = Forger(pki.keys).signed("police", make_resident(), now=NOW)
    with pytest.raises(Rejection) as excinfo:
        envelope.read_envelope(envelope.encode({**event, profile.STAMP_PROOF: "0.1"}))
    assert excinfo.value.reason is ReasonCode.REINJECTED_DELIVERY
    env = envelope.read_envelope(
        envelope.encode({**event, profile.STAMP_PROOF: "0.1"}), delivered=True
    )
    assert profile.STAMP_PROOF not in env.signed_form()


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=300), st.data())
def test_any_batch_size_and_index_round_trips(pki: Pki, size: int, data: st.DataObject) -> None:
    """For any batch size, the event at any index verifies, and its proof re-encodes the same."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    stamped = stamping.stamp_many(_events(size), pki.gateway)
    event = json.loads(envelope.encode(stamped[index]))
    assert stamp.verify_stamp(event, pki.trust, NOW).owner == "gateway"
    decoded = merkle.decode_proof(event[profile.STAMP_PROOF])
    assert decoded[:2] == (index, size)
    assert stamping.encode_proof(*decoded) == event[profile.STAMP_PROOF]


def _client(pki: Pki, agency: str) -> AgencyClient:
    return AgencyClient(
        agency=agency,
        signing_key=pki.keys[agency],
        trust=pki.trust,
        transport=MemoryTransport(),
        clock=lambda: NOW,
    )


def test_client_accepts_batch_stamped_deliveries_and_receipts(pipeline: Pipeline, pki: Pki) -> None:
    """The agency client verifies deliveries and receipts stamped together in one batch."""
    forger = Forger(pki.keys)
    records = [
        IngressRecord(
            "xgw.ingress.police", 0, offset, event["subject"].encode(), envelope.encode(event)
        )
        for offset, event in enumerate(
            forger.signed("police", make_resident(f"Nguyễn Văn {name}"), now=NOW)
            for name in ("An", "Bình", "Cường", "Dũng")
        )
    ]
    records.append(IngressRecord("xgw.ingress.police", 0, 4, b"k", b"not json"))
    decisions = pipeline.decide_batch(records, NOW)
    values = [o.value for d in decisions for o in d.outputs if not o.topic.endswith("audit")]
    tokens = {json.loads(v)[profile.STAMP] for v in values if v and v.startswith(b"{")}
    assert len(tokens) == 1  # four accepted, one refused: one signature for all
    health = _client(pki, "health")
    police = _client(pki, "police")
    for decision in decisions:
        for out in decision.outputs:
            assert out.value is not None
            if out.topic == "xgw.deliver.health":
                assert health.verify_delivery(out.value).purpose == "health_insurance_enrolment"
            elif out.topic == "xgw.receipts.police":
                receipt = police.verify_receipt(out.value)
                assert receipt.status == ("accepted" if decision.accepted else "rejected")
    moved = json.loads(
        next(o.value for o in decisions[0].outputs if o.topic == "xgw.deliver.health")
    )
    moved[profile.STAMP_PROOF] = json.loads(
        next(o.value for o in decisions[1].outputs if o.topic == "xgw.deliver.health")
    )[profile.STAMP_PROOF]
    with pytest.raises(RefusedDelivery) as excinfo:
        health.verify_delivery(envelope.encode(moved))
    assert excinfo.value.reason is ReasonCode.BAD_SIGNATURE
    assert json.loads(values[-1])["type"] == RECEIPT_TYPE


@pytest.mark.parametrize("size", [1, 2, 5])
def test_encoded_stamps_are_the_stamped_events(size: int, pki: Pki) -> None:
    """The bytes spliced from canonical text parse to exactly the events stamp_leaves gives."""
    events: list[Event] = [
        {**event, "subject": "Nguyễn Thị Ánh, Phường Bến Nghé, Thủ Đức", "data": {"n": [1, None]}}
        for event in _events(size)
    ]
    leaves = [stamp.leaf(event) for event in events]
    encoded = stamp.stamp_leaves_encoded(leaves, pki.gateway)
    stamped = stamping.stamp_leaves(leaves, pki.gateway)
    for raw, event in zip(encoded, stamped, strict=True):
        parsed = json.loads(raw.decode("utf-8"))
        assert parsed == event
        assert "Nguyễn Thị Ánh" in raw.decode("utf-8")  # UTF-8 as is, not \u escapes
        stamp.verify_stamp(parsed, pki.trust, NOW)


def test_an_empty_event_is_spliced_without_a_leading_comma(pki: Pki) -> None:
    """The degenerate ``{}`` still gives valid JSON."""
    (raw,) = stamp.stamp_leaves_encoded([stamp.leaf({})], pki.gateway)
    assert set(json.loads(raw)) == {profile.STAMP, profile.STAMP_PROOF}
