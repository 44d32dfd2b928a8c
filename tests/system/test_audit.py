"""The audit trail through the real broker: worker -> xgw.audit -> audit writer process."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.audit.store import open_store
from gateway.lab.processes import WorkerProcess
from tests.conftest import POSTGRES_URL, BrokerUnderTest, Pki, make_resident
from tests.support.harness import Exchange, running_exchange, settings_on, xgw

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store_url(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    any_broker: BrokerUnderTest,
) -> str:
    """A new store per store kind and per broker: a trail is one exchange's."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp(f'audit-{any_broker.name}') / 'audit.db'}"
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    name = f"it_{any_broker.name}_{uuid.uuid4().hex}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable in CI: {exc}")
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    return f"{POSTGRES_URL}?options=-csearch_path%3D{name}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exchange(
    any_broker: BrokerUnderTest,
    pki: Pki,
    store_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Exchange]:
    prefix = f"au{uuid.uuid4().hex[:8]}"
    folder = tmp_path_factory.mktemp("audit-run")
    settings = settings_on(
        any_broker,
        pki.directory,
        prefix,
        audit_store=store_url,
        audit_key_file=folder / "subject.key",
        audit_checkpoint_every=25,
        audit_group=f"audit-{prefix}",
    )
    async with running_exchange(settings, pki, folder) as running:
        yield running


def _writer(exchange: Exchange, log: Path) -> WorkerProcess:
    process = WorkerProcess(exchange.settings, log, ("audit", "writer"))
    process.start()
    return process


async def _count(exchange: Exchange) -> int:
    def count() -> int:
        store = open_store(exchange.settings.audit_store)
        try:
            return store.count()
        finally:
            store.close()

    return await asyncio.to_thread(count)


async def test_writer_killed_mid_stream_loses_and_doubles_nothing(
    exchange: Exchange, tmp_path: Path
) -> None:
    """A writer SIGKILLed mid-stream and restarted leaves every decision stored exactly once."""
    police = exchange.clients["police"]
    writer = _writer(exchange, tmp_path / "writer-1.log")
    people = [f"079190{n:06d}" for n in range(1, 121)]
    published = [await police.publish(make_resident(personal_id=p)) for p in people[:60]]
    for _ in range(300):
        if await _count(exchange) > 0:
            break
        await asyncio.sleep(0.05)
    sending = asyncio.gather(*(police.publish(make_resident(personal_id=p)) for p in people[60:]))
    await asyncio.sleep(0.05)
    writer.kill()  # mid-stream: while the second half is being decided and audited
    published += await sending
    for event in published:
        await exchange.receipt_for("police", event.record, "accepted")
    restarted = _writer(exchange, tmp_path / "writer-2.log")
    try:
        for _ in range(300):
            if await _count(exchange) >= len(published):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # anything doubled would arrive now
    finally:
        restarted.stop()
    assert await _count(exchange) == len(published)
    result = xgw(exchange.settings, "audit", "verify", "--json")
    report = json.loads(result.stdout)
    assert report["ok"], report
    assert report["entries"] == len(published)


async def test_subject_lists_exactly_that_persons_deliveries(exchange: Exchange) -> None:
    """``xgw audit subject`` shows the three deliveries about one person and nothing else."""
    result = xgw(exchange.settings, "audit", "subject", "079190000007", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(r["recipient"] for r in rows) == ["education", "health", "land"]
    assert len({r["event_id"] for r in rows}) == 1
    nobody = json.loads(xgw(exchange.settings, "audit", "subject", "079190999999", "--json").stdout)
    assert nobody == []


async def test_evidence_exported_by_the_cli_verifies_offline(
    exchange: Exchange, tmp_path: Path
) -> None:
    """The evidence file of one exchange verifies with check-evidence."""
    store = open_store(exchange.settings.audit_store)
    try:
        entry = next(iter(store.entries()))
    finally:
        store.close()
    event_id = json.loads(entry.body)["event_id"]
    target = tmp_path / "evidence.json"
    exported = xgw(exchange.settings, "audit", "evidence", event_id, "-o", str(target))
    assert exported.returncode == 0, exported.stderr
    checked = xgw(exchange.settings, "audit", "check-evidence", str(target))
    assert checked.returncode == 0, checked.stderr
    assert "evidence verifies" in checked.stdout


async def test_tampering_with_the_streamed_trail_is_reported(exchange: Exchange) -> None:
    """A row of the trail the stream wrote, changed in the database, fails ``xgw audit verify``.

    Runs last in this module: it damages the module's store on purpose. The full set of
    tamperings is tested on both databases in test_audit.py.
    """
    store = open_store(exchange.settings.audit_store)
    try:
        target = next(e for e in store.entries() if e.seq == 42)
    finally:
        store.close()
    statement = (
        "UPDATE audit_entries SET body = replace(body, 'delivered', 'rejected') WHERE seq = 42"
    )
    url = exchange.settings.audit_store
    if url.startswith("sqlite:///"):
        import sqlite3  # noqa: PLC0415

        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement)
        connection.close()
    else:
        import psycopg  # noqa: PLC0415

        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(statement.encode())
    assert '"delivered"' in target.body
    result = xgw(exchange.settings, "audit", "verify")
    assert result.returncode == 1
    assert "BROKEN at entry 42: content was changed" in result.stderr
