"""Hostile input on the ingress path: every record gets a decision, nothing crashes."""

from __future__ import annotations

import json
import random

from hypothesis import given
from hypothesis import strategies as st

from gateway.core import envelope
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.lab.forgery import Forger
from tests.conftest import NOW, Pki, make_resident

headers = st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=40)), max_size=4)
keys = st.one_of(st.none(), st.binary(max_size=64))


def assert_decided(pipeline: Pipeline, record: IngressRecord) -> None:
    decision = pipeline.decide(record, NOW)
    if decision.accepted:
        return
    assert decision.reason is not None
    (dead,) = [o for o in decision.outputs if o.topic == "xgw.deadletter"]
    assert dead.value == record.value
    assert dict(dead.headers)["xgw-reason"] == decision.reason.value.encode()
    assert any(o.topic == "xgw.receipts.police" for o in decision.outputs)


@given(value=st.binary(max_size=2048), key=keys, extra=headers)
def test_arbitrary_bytes_are_dead_lettered_with_a_reason(
    pipeline: Pipeline, value: bytes, key: bytes | None, extra: list[tuple[str, bytes]]
) -> None:
    """Any bytes, key and headers on an ingress topic end in a decision with a reason code."""
    assert_decided(pipeline, IngressRecord("xgw.ingress.police", 0, 1, key, value, tuple(extra)))


@given(seed=st.integers(min_value=0, max_value=2**32 - 1), flips=st.integers(1, 8))
def test_mutated_valid_events_are_decided(
    pipeline: Pipeline, pki: Pki, seed: int, flips: int
) -> None:
    """A valid event with bytes flipped, cut or duplicated is still decided, never a crash."""
    rng = random.Random(seed)
    event = Forger(pki.keys).signed("police", make_resident(), now=NOW)
    raw = bytearray(envelope.encode(event))
    for _ in range(flips):
        operation = rng.randrange(3)
        at = rng.randrange(len(raw))
        if operation == 0:
            raw[at] ^= 1 << rng.randrange(8)
        elif operation == 1:
            del raw[at : at + rng.randrange(1, 20)]
        else:
            raw[at:at] = raw[at : at + rng.randrange(1, 20)]
    record = IngressRecord("xgw.ingress.police", 0, seed, event["subject"].encode(), bytes(raw))
    assert_decided(pipeline, record)


@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=30,
    )
)
def test_arbitrary_json_is_decided(pipeline: Pipeline, value: object) -> None:
    """Any JSON document, object or not, is decided with a reason."""
    raw = json.dumps(value).encode()
    assert_decided(pipeline, IngressRecord("xgw.ingress.police", 0, 2, b"k", raw))
