"""The rollback a store cannot show alone, caught through the broker by the agencies' copies.

The audit writer publishes its checkpoints on the checkpoints topic; police's client keeps the
latest. Then the tail of the trail is deleted together with its seal, and an older genuine
seal is put back: ``xgw audit verify`` alone is fooled, verification against police's file or
the topic is not, and the writer restarted on the rolled-back store is caught by police live.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from connectors.checkpoints import CheckpointKeeper
from gateway.audit.store import open_store
from gateway.lab.broker import EmbeddedBroker
from gateway.lab.processes import WorkerProcess
from gateway.trust.checkpoint import Checkpoint, Judgement, Standing
from tests.conftest import Pki, make_resident
from tests.support.harness import Exchange, exchange_settings, running_exchange, xgw

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
WAIT_S = 60.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    broker: EmbeddedBroker, pki: Pki, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Exchange]:
    prefix = f"rb{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("rollback")
    settings = exchange_settings(
        broker.bootstrap_servers,
        pki.directory,
        prefix,
        audit_store=f"sqlite:///{folder / 'audit.db'}",
        audit_key_file=folder / "subject.key",
        audit_group=f"audit-{prefix}",
    )
    async with running_exchange(settings, pki, folder) as running:
        yield running


def _seal(exchange: Exchange) -> Checkpoint | None:
    store = open_store(exchange.settings.audit_store)
    try:
        return store.seal()
    finally:
        store.close()


async def _until(what: str, done: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while loop.time() < deadline:
        if callable(done) and done():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


async def _publish(exchange: Exchange, first: int, count: int) -> None:
    police = exchange.clients["police"]
    for n in range(first, first + count):
        event = await police.publish(make_resident(personal_id=f"079190{n:06d}"))
        await exchange.receipt_for("police", event.record, "accepted")


async def test_a_rolled_back_trail_is_found_by_the_checkpoints_the_agency_holds(  # noqa: PLR0915 - one story
    exchange: Exchange, tmp_path: Path
) -> None:
    """Cut the tail with its seal, restore an old genuine seal: police's copy proves it."""
    held = tmp_path / "police.jsonl"
    keeper: CheckpointKeeper = exchange.clients["police"].checkpoint_keeper(held)
    judgements: list[Judgement] = []
    ready = asyncio.Event()

    async def hold() -> None:
        stream = exchange.clients["police"].checkpoints(
            keeper, group=f"police-cp-{uuid.uuid4().hex[:6]}", ready=ready
        )
        async for judgement in stream:  # live: each judgement is seen as it comes
            judgements.append(judgement)  # noqa: PERF401

    holding = asyncio.create_task(hold())
    writer = WorkerProcess(exchange.settings, tmp_path / "writer-1.log", ("audit", "writer"))
    writer.start()
    try:
        await asyncio.wait_for(ready.wait(), WAIT_S)
        await _publish(exchange, 1, 8)
        await _until("the seal of the first batch", lambda: (_seal(exchange) or _NONE).seq >= 8)
        old_seal = _seal(exchange)
        assert old_seal is not None
        await _until("police holding it", lambda: (keeper.latest or _NONE).seq == old_seal.seq)
        await _publish(exchange, 9, 8)
        await _until("the second batch audited", lambda: (_seal(exchange) or _NONE).seq >= 16)
        head = _seal(exchange)
        assert head is not None
        await _until("police holding the head", lambda: (keeper.latest or _NONE).seq == head.seq)
        assert {j.standing for j in judgements} <= {Standing.EXTENDS, Standing.OLDER}
        assert Standing.EXTENDS in {j.standing for j in judgements}
        assert writer.stop(15) == 0

        # The rollback, as someone with write access to the database could do it.
        path = exchange.settings.audit_store.removeprefix("sqlite:///")
        with sqlite3.connect(path) as connection:
            connection.execute("DELETE FROM audit_entries WHERE seq > ?", (old_seal.seq,))
            connection.execute("DELETE FROM audit_seal")
            connection.execute(
                "UPDATE audit_published SET seq = ?, root = ?", (old_seal.seq, old_seal.root)
            )
        connection.close()
        store = open_store(exchange.settings.audit_store)
        try:
            store.set_seal(old_seal)
        finally:
            store.close()

        alone = xgw(exchange.settings, "audit", "verify")
        assert alone.returncode == 0, alone.stderr  # the store alone is fooled
        for source in (str(held), "topic"):
            found = xgw(exchange.settings, "audit", "verify", "--checkpoints", source)
            assert found.returncode == 1, found.stdout
            assert found.stderr.count("\n") == 1, found.stderr
            assert f"BROKEN at entry {head.seq}: the gateway signed entry {head.seq}" in (
                found.stderr
            )
            assert "rolled back" in found.stderr
        report = json.loads(
            xgw(exchange.settings, "audit", "verify", "--checkpoints", str(held), "--json").stdout
        )
        assert (report["ok"], report["broken_at"], report["held_outside"]) == (
            False,
            head.seq,
            1,
        )

        # The writer restarted on the rolled-back store publishes an older head, signed later.
        restarted = WorkerProcess(exchange.settings, tmp_path / "writer-2.log", ("audit", "writer"))
        restarted.start()
        try:
            await _until(
                "police seeing the conflict",
                lambda: any(j.standing is Standing.CONFLICT for j in judgements),
            )
        finally:
            restarted.stop(15)
        conflict = next(j for j in judgements if j.standing is Standing.CONFLICT)
        assert "rolled back" in conflict.why
        kept = [json.loads(line)["seq"] for line in held.read_text().splitlines()]
        assert kept[0] == head.seq  # the genuine head stays in the file as evidence
    finally:
        writer.stop(15)
        holding.cancel()
        await asyncio.gather(holding, return_exceptions=True)


class _Nothing:
    seq = 0


_NONE = _Nothing()
