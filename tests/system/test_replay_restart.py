"""The replay window lives in a changelogged faust table and survives a worker restart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import WorkerProcess
from gateway.reasons import ReasonCode
from tests.conftest import Pki, make_resident
from tests.support.harness import Exchange, exchange_settings, running_exchange

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    broker: EmbeddedBroker, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    settings = exchange_settings(
        broker.bootstrap_servers, pki.directory, f"rr{uuid.uuid4().hex[:8]}"
    )
    async with running_exchange(settings, pki, tmp_path_factory.mktemp("log")) as running:
        yield running


async def test_replay_after_a_restart_is_still_refused(
    exchange: Exchange, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Events accepted before a worker restart are refused as duplicates after it."""
    police = exchange.clients["police"]
    published = [
        await police.publish(make_resident(personal_id=f"079190{n:06d}")) for n in range(1, 21)
    ]
    for event in published:
        await exchange.receipt_for("police", event.record, "accepted")
    exchange.worker.stop()
    replacement = WorkerProcess(exchange.settings, tmp_path_factory.mktemp("log2") / "worker.log")
    replacement.start()
    exchange.worker = replacement
    await replacement.wait_ready(60)
    assert await exchange.metric("xgw_assigned_partitions{}") > 0
    for event in published:
        await police.send_raw(event.record, key=event.subject.encode())
    for event in published:
        receipt = await exchange.receipt_for("police", event.record, "rejected")
        assert receipt.reason == ReasonCode.DUPLICATE_ID
    fresh = await police.publish(make_resident(personal_id="079190000999"))
    await exchange.delivered("health", fresh.id)
