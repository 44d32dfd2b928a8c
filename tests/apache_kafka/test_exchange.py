"""The exchange end to end on Apache Kafka, each party with its own principal and ACLs.

The worker and the audit writer run with docker-compose's gateway settings (its ``XGW_*``
environment, the SCRAM user ``gateway``); each agency's client is its own SCRAM user, held to
its topics by the broker. Police's registrations reach health, education and land with their
receipts, the audit trail records every decision, and police holds the trail's checkpoints.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.audit.store import open_store
from gateway.lab.processes import WorkerProcess
from gateway.settings import Settings
from gateway.trust.checkpoint import Standing
from tests.apache_kafka.conftest import apache_exchange
from tests.conftest import Pki, make_resident
from tests.support.apache_kafka import ApacheKafka
from tests.support.harness import Exchange, xgw

pytestmark = pytest.mark.asyncio(loop_scope="module")
RECIPIENTS = ("health", "education", "land")
WAIT_S = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    apache_kafka: ApacheKafka, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    folder = tmp_path_factory.mktemp("apache-exchange")
    async with apache_exchange(apache_kafka, pki, folder) as running:
        assert running.settings.sasl_username == "gateway"
        assert running.settings.sasl_mechanism == "SCRAM-SHA-512"
        yield running


def _delivered(settings: Settings, ids: set[str]) -> tuple[int, int]:
    """(entries, of them deliveries of ``ids``) in the trail.

    The exchange topics are shared by the session's Apache Kafka tests (the agencies' ACLs name
    them), so the trail holds the decisions of the tests before this one too.
    """
    store = open_store(settings.audit_store)
    try:
        bodies = [json.loads(e.body) for e in store.entries()]
    finally:
        store.close()
    return len(bodies), sum(b["outcome"] == "delivered" and b["event_id"] in ids for b in bodies)


async def test_registrations_reach_each_recipient_with_receipts_and_an_audit_trail(
    exchange: Exchange, tmp_path: Path
) -> None:
    """Twenty registrations: 20 receipts, 60 deliveries, 20 audit entries, held checkpoints."""
    police = exchange.clients["police"]
    keeper = police.checkpoint_keeper(tmp_path / "police.jsonl")
    judgements: list[Standing] = []

    async def hold() -> None:
        async for judgement in police.checkpoints(keeper):
            judgements.append(judgement.standing)  # noqa: PERF401 - live

    holding = asyncio.create_task(hold())
    writer = WorkerProcess(exchange.settings, tmp_path / "audit.log", ("audit", "writer"))
    writer.start()
    try:
        people = [f"079190{n:06d}" for n in range(500, 520)]
        published = [await police.publish(make_resident(personal_id=p)) for p in people]
        for event in published:
            await exchange.receipt_for("police", event.record, "accepted")
            for agency in RECIPIENTS:
                delivered = await exchange.delivered(agency, event.id)
                assert delivered.source_agency == "police"
        for _ in range(int(WAIT_S * 10)):
            entries, delivered = _delivered(exchange.settings, {e.id for e in published})
            held = keeper.latest.seq if keeper.latest else 0
            if delivered >= len(published) and held >= entries:
                break
            await asyncio.sleep(0.1)
        assert delivered == len(published)
        assert keeper.latest is not None
        assert keeper.latest.seq == entries
        assert set(judgements) <= {Standing.EXTENDS, Standing.OLDER}
    finally:
        writer.stop(15)
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)
    for agency in RECIPIENTS:
        assert len({e.id for e in exchange.deliveries[agency]}) == len(published)
    records = {event.record for event in published}
    assert not [m for m in exchange.dead_letters if m.value in records]
    result = xgw(
        exchange.settings,
        "audit",
        "verify",
        "--checkpoints",
        "topic",
        "--checkpoints",
        str(keeper.path),
        "--json",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"], report
    assert report["entries"] == entries
    assert report["consistency_proof"]["verified"]


async def test_a_record_at_the_brokers_size_limit_is_dead_lettered_and_the_worker_goes_on(
    exchange: Exchange,
) -> None:
    """A record just under Apache Kafka's 1 MB limit is refused, its dead letter produced.

    The dead letter of a record that large leaves the value out (``xgw-omitted: value``, the
    digest in ``xgw-record-sha256``): with its headers it would exceed the broker's limit.
    """
    police = exchange.clients["police"]
    big = b"{" + b" " * (1_048_000 - 2) + b"}"
    digest = hashlib.sha256(big).hexdigest()
    await police.send_raw(big, key=b"big")
    event = await police.publish(make_resident(personal_id="079190000999"))
    await exchange.receipt_for("police", event.record, "accepted")
    await exchange.delivered("health", event.id)
    receipt = await exchange.receipt_for("police", big, "rejected")
    assert receipt.reason == "record_too_large"

    def letter() -> list[dict[str, bytes]]:
        headers = [dict(m.headers) for m in exchange.dead_letters]
        return [h for h in headers if h.get("xgw-record-sha256") == digest.encode()]

    (headers,) = await exchange.wait_for("the big record's dead letter", letter)
    assert headers["xgw-reason"] == b"record_too_large"
    assert headers["xgw-omitted"] == b"value"
