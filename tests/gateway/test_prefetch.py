"""Origin signatures verified on threads ahead of the decisions: same decisions, other threads."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from connectors.forgery import Forger
from gateway import envelope, keys
from gateway.pipeline import IngressRecord, Pipeline
from gateway.policy import Policy
from gateway.reasons import ReasonCode
from gateway.replay import ReplayWindow
from gateway.topics import TopicNames
from tests.conftest import NOW, Pki, make_pipeline, make_resident

TOPICS = TopicNames()


def _threaded(pki: Pki, policy: Policy, threads: int) -> Pipeline:
    plain = make_pipeline(pki, policy)
    config = replace(plain._config, verify_threads=threads)
    return Pipeline(config, ReplayWindow(timedelta(days=1), 10_000))


def _batch(pki: Pki) -> list[IngressRecord]:
    """Valid events, every forgery, a stale event with a broken signature, a repeat in-batch."""
    forger = Forger(pki.keys)
    records: list[IngressRecord] = []

    def add(agency: str, value: bytes, key: bytes | None) -> None:
        records.append(IngressRecord(TOPICS.ingress(agency), 0, len(records), key, value))

    for index, name in enumerate(("Nguyễn Văn An", "Trần Thị Bình", "Lê Minh Châu")):
        person = make_resident(name, personal_id=f"07919001234{index}")
        event = forger.signed("police", person, now=NOW)
        add("police", envelope.encode(event), event["subject"].encode())
    for reason in forger.reasons():
        forged = forger.forge(reason, make_resident("Phạm Thị Dung"), NOW)
        add(forged.agency, forged.value, forged.key)
    stale = forger.signed("police", make_resident("Võ Văn Em"), now=NOW - timedelta(days=3))
    stale["data"] = {**stale["data"], "_sd": list(reversed(stale["data"]["_sd"]))}
    add("police", envelope.encode(stale), stale["subject"].encode())
    add("police", records[0].value, records[0].key)  # the first event again: duplicate_id
    return records


@pytest.fixture
def verified_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that ran each Ed25519 verification."""
    names: list[str] = []
    original = keys._verify_ed25519

    def spy(public: bytes, signature: bytes, message: bytes) -> bool:
        names.append(threading.current_thread().name)
        return original(public, signature, message)

    monkeypatch.setattr(keys, "_verify_ed25519", spy)
    return names


def test_threaded_decisions_equal_inline_ones(
    pki: Pki, policy: Policy, verified_on: list[str]
) -> None:
    """Every reason, output byte and recipient is the same with signatures checked on threads."""
    records = _batch(pki)
    inline = make_pipeline(pki, policy).decide_batch(records, NOW)
    assert set(verified_on) == {threading.current_thread().name}
    verified_on.clear()
    threaded_pipeline = _threaded(pki, policy, threads=2)
    try:
        threaded = threaded_pipeline.decide_batch(records, NOW)
    finally:
        threaded_pipeline.close()
    assert threaded == inline
    reasons = [d.reason for d in threaded]
    assert reasons[:3] == [None, None, None]
    assert reasons[-2] is ReasonCode.STALE_EVENT  # checked before the (broken) signature
    assert reasons[-1] is ReasonCode.DUPLICATE_ID  # the window sees the batch's own events
    assert ReasonCode.BAD_SIGNATURE in reasons
    assert verified_on, "no signature was verified"
    assert all(name.startswith("xgw-verify") for name in verified_on), verified_on


def test_a_single_record_is_verified_inline(
    pki: Pki, policy: Policy, verified_on: list[str]
) -> None:
    """A batch of one gains nothing from a thread hop, so decide() verifies on the caller."""
    pipeline = _threaded(pki, policy, threads=1)
    try:
        (record, *_) = _batch(pki)
        assert pipeline.decide(record, NOW).accepted
    finally:
        pipeline.close()
    assert verified_on == [threading.current_thread().name]
