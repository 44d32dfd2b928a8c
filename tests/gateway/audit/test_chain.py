"""The audit trail end to end without Kafka: writer, chain, tampering, subject, evidence, archive.

Every test runs on SQLite and on PostgreSQL; tampering is done directly in SQL, as an operator
with database access could.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from connectors.checkpoints import CheckpointKeeper, RefusedCheckpoint
from gateway.audit.chain import chain, prepare, verify_evidence
from gateway.audit.model import GENESIS_HASH
from gateway.audit.ops import archive, export_evidence, subject_report, verify_store
from gateway.audit.store import AuditStore, open_store
from gateway.audit.writer import AuditWriter, TamperedStore, load_subject_secret
from gateway.clock import rfc3339
from gateway.core import envelope
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.lab.forgery import Forger
from gateway.names import GATEWAY_OWNER
from gateway.trust.ca import load_signing_key
from gateway.trust.checkpoint import (
    CHECKPOINT_TYP,
    Checkpoint,
    PublishedCheckpoint,
    Standing,
    sign_checkpoint,
)
from gateway.wire.canonical import canonical_bytes, loads_strict
from gateway.wire.jws import sign_detached
from tests.conftest import NOW, POSTGRES_URL, Pki, make_resident

SECRET = b"k" * 32


@dataclass
class Trail:
    """A store, a way to run raw SQL on its database, and a writer."""

    store: AuditStore
    execute: Callable[[str], None]
    writer: AuditWriter


@pytest.fixture(params=["sqlite", "postgres"])
def trail(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[Trail]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        url = f"sqlite:///{path}"

        def execute(statement: str) -> None:
            with sqlite3.connect(path) as connection:
                connection.execute(statement)
            connection.close()

    else:
        name = request.getfixturevalue("schema")
        url = f"{POSTGRES_URL}?options=-csearch_path%3D{name}"

        def execute(statement: str) -> None:
            with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                connection.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(name)))
                connection.execute(statement.encode())

    store = open_store(url)
    key = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
    writer = AuditWriter(
        store, SECRET, key, checkpoint_every=5, checkpoint_seconds=3600, publish_seconds=0
    )
    yield Trail(store, execute, writer)
    store.close()


def decisions(pipeline: Pipeline, pki: Pki, people: list[str]) -> list[bytes]:
    """The audit records the gateway writes for one registration of each person."""
    forger = Forger(pki.keys)
    records = []
    for offset, personal_id in enumerate(people):
        event = forger.signed("police", make_resident(personal_id=personal_id), now=NOW)
        raw = envelope.encode(event)
        record = IngressRecord("xgw.ingress.police", 0, offset, event["subject"].encode(), raw)
        decision = pipeline.decide(record, NOW)
        records += [o.value for o in decision.outputs if o.topic == "xgw.audit"]
    return records


PEOPLE = [f"079190{n:06d}" for n in range(1, 13)]


def test_a_stream_of_decisions_verifies(trail: Trail, pipeline: Pipeline, pki: Pki) -> None:
    """Twelve decisions make a chain with checkpoints every five entries and a seal; it verifies."""
    assert trail.writer.write(decisions(pipeline, pki, PEOPLE)) == 12
    report = verify_store(trail.store, pki.fresh_trust())
    assert report.ok, report.broken
    assert (report.entries, report.last_seq, report.checkpoints) == (12, 12, 2)
    assert trail.store.seal() is not None


def test_writing_the_same_records_again_adds_nothing(
    trail: Trail, pipeline: Pipeline, pki: Pki
) -> None:
    """A restarted writer re-reading records (or a re-deciding worker) doubles no entry."""
    records = decisions(pipeline, pki, PEOPLE[:4])
    assert trail.writer.write(records) == 4
    assert trail.writer.write(records + records) == 0
    assert trail.store.count() == 4


def test_a_writer_killed_after_an_append_is_caught_up_by_its_restart(
    trail: Trail, pipeline: Pipeline, pki: Pki
) -> None:
    """Killed after appending but before checkpoint and seal: the restart signs both.

    The restarted writer re-reads records that are all stored already (it adds nothing), and
    still seals the head and checkpoints the entries the killed one left unsigned.
    """
    records = decisions(pipeline, pki, PEOPLE[:8])
    assert trail.writer.write(records[:3]) == 3
    assert trail.store.seal() is not None
    unsigned = [prepare(loads_strict(raw), SECRET) for raw in records[3:]]
    assert trail.store.append(chain(trail.store.head(), unsigned)) == 5  # then SIGKILL
    stale = verify_store(trail.store, pki.fresh_trust())
    assert not stale.ok
    assert stale.broken is not None
    assert "seal ends at 3" in stale.broken.problem
    key = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
    restarted = AuditWriter(trail.store, SECRET, key, checkpoint_every=5, checkpoint_seconds=3600)
    assert restarted.write(records) == 0
    report = verify_store(trail.store, pki.fresh_trust())
    assert report.ok, report.broken
    assert [c.seq for c in trail.store.checkpoints()] == [8]
    seal = trail.store.seal()
    assert seal is not None
    assert seal.seq == 8


def test_no_clear_personal_id_is_stored(trail: Trail, pipeline: Pipeline, pki: Pki) -> None:
    """Entries hold a keyed hash of the subject, never the personal id or its plain digest."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE[:2]))
    text = "".join(e.body for e in trail.store.entries())
    assert PEOPLE[0] not in text
    assert envelope.subject_digest(PEOPLE[0]) not in text


TAMPERING = [
    (
        "changed row",
        "UPDATE audit_entries SET body = replace(body, 'delivered', 'rejected') WHERE seq = 7",
        7,
    ),
    ("deleted row", "DELETE FROM audit_entries WHERE seq = 4", 4),
    (
        "inserted row",
        "UPDATE audit_entries SET seq = seq + 100 WHERE seq >= 9; "
        "INSERT INTO audit_entries SELECT 9, 'forged', event_id, subject_key, decided_at, body,"
        " prev_hash, hash FROM audit_entries WHERE seq = 8",
        9,
    ),
    (
        "reordered rows",
        "UPDATE audit_entries SET seq = -1 WHERE seq = 2; "
        "UPDATE audit_entries SET seq = 2 WHERE seq = 3; "
        "UPDATE audit_entries SET seq = 3 WHERE seq = -1",
        2,
    ),
    ("truncated tail", "DELETE FROM audit_entries WHERE seq > 10", 12),
    # Cut after the last checkpoint (10) together with the seal: nothing signed covers 11..12,
    # so only the missing seal betrays it.
    (
        "truncated tail and seal",
        "DELETE FROM audit_entries WHERE seq > 10; DELETE FROM audit_seal",
        10,
    ),
]


@pytest.mark.parametrize(("case", "statement", "where"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_each_tampering_is_found_at_its_place(
    trail: Trail, pipeline: Pipeline, pki: Pki, case: str, statement: str, where: int
) -> None:
    """Changing, deleting, inserting, reordering rows or cutting the tail is reported there."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE))
    for part in statement.split("; "):
        trail.execute(part)
    report = verify_store(trail.store, pki.fresh_trust())
    assert not report.ok, case
    assert report.broken is not None
    assert report.broken.seq == where, f"{case}: {report.broken}"


def test_a_consistently_rewritten_chain_is_caught_by_the_checkpoint(
    trail: Trail, pipeline: Pipeline, pki: Pki
) -> None:
    """Rewriting a body and recomputing every later hash still contradicts a signed checkpoint."""
    from gateway.audit.chain import link  # noqa: PLC0415

    trail.writer.write(decisions(pipeline, pki, PEOPLE))
    rows = list(trail.store.entries())
    previous = rows[1].hash
    for row in rows[2:]:
        body = row.body.replace("delivered", "rejected") if row.seq == 3 else row.body
        digest = link(previous, body)
        trail.execute(  # the tampering an operator with database access could do
            f"UPDATE audit_entries SET body = '{body}', prev_hash = '{previous}', "  # noqa: S608
            f"hash = '{digest}' WHERE seq = {row.seq}"
        )
        previous = digest
    report = verify_store(trail.store, pki.fresh_trust())
    assert report.broken is not None
    assert report.broken.seq == 5
    assert "checkpoint" in report.broken.problem


def test_subject_report_shows_only_that_person(trail: Trail, pipeline: Pipeline, pki: Pki) -> None:
    """A person sees each agency that received data about them, with purpose and legal basis."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE[:5]))
    rows = subject_report(trail.store, SECRET, PEOPLE[2])
    assert {r.recipient for r in rows} == {"health", "education", "land"}
    assert {r.purpose for r in rows} == {
        "health_insurance_enrolment",
        "school_admission_residence",
        "land_owner_identity",
    }
    assert all(r.legal_basis and r.source == "police" for r in rows)
    assert len({r.event_id for r in rows}) == 1
    assert subject_report(trail.store, SECRET, "079190999999") == []


def test_evidence_verifies_offline_and_detects_changes(
    trail: Trail, pipeline: Pipeline, pki: Pki
) -> None:
    """Exported evidence verifies against the root; a changed decision in it does not."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE))
    event_id = json.loads(next(iter(trail.store.entries(after_seq=2))).body)["event_id"]
    document = json.loads(json.dumps(export_evidence(trail.store, pki.fresh_trust(), event_id)))
    assert document["checkpoint"]["seq"] == 5
    assert verify_evidence(document, pki.fresh_trust()) == []
    document["decisions"][0]["recipients"] = []
    assert verify_evidence(document, pki.fresh_trust())


def test_archive_keeps_the_rest_verifiable(
    trail: Trail, pipeline: Pipeline, pki: Pki, tmp_path: Path
) -> None:
    """Archiving old entries cuts at a checkpoint; the remaining chain still verifies."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE))
    moved = archive(trail.store, NOW + timedelta(days=1), tmp_path / "archive.jsonl")
    assert moved == 10  # up to the last checkpoint (entry 10)
    report = verify_store(trail.store, pki.fresh_trust())
    assert report.ok, report.broken
    assert (report.first_seq, report.last_seq) == (11, 12)
    lines = (tmp_path / "archive.jsonl").read_text(encoding="utf-8").splitlines()
    assert sum('"entry"' in line for line in lines) == 10


def test_subject_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    """The audit subject key is made on first use, kept, and readable by its owner only."""
    path = tmp_path / "audit" / "subject.key"
    first = load_subject_secret(path)
    assert load_subject_secret(path) == first
    assert len(first) == 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"


# --- the hash tree, the published checkpoints and the agencies' copies ---------------------


def _keeper(pki: Pki, path: Path) -> CheckpointKeeper:
    return CheckpointKeeper.open(path, pki.fresh_trust())


def _restarted(trail: Trail, pki: Pki) -> AuditWriter:
    key = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
    return AuditWriter(
        trail.store, SECRET, key, checkpoint_every=5, checkpoint_seconds=3600, publish_seconds=0
    )


def _deliver(writer: AuditWriter, keeper: CheckpointKeeper) -> list[Standing]:
    """Hand the writer's outbox to an agency, as the checkpoints topic would; mark it sent."""
    standings = [keeper.accept(record.encode()).standing for record in writer.outbox]
    if writer.outbox:
        writer.published(writer.outbox[-1])
    writer.outbox.clear()
    return standings


def test_every_published_checkpoint_is_proven_to_extend_the_one_before(
    trail: Trail, pipeline: Pipeline, pki: Pki, tmp_path: Path
) -> None:
    """Batch by batch, and across a writer restart, each record extends the held checkpoint."""
    keeper = _keeper(pki, tmp_path / "police.jsonl")
    records = decisions(pipeline, pki, PEOPLE)
    standings = []
    for start in range(0, 12, 3):
        trail.writer.write(records[start : start + 3])
        standings += _deliver(trail.writer, keeper)
    assert set(standings) == {Standing.EXTENDS}, standings
    assert len(standings) >= 5
    restarted = _restarted(trail, pki)  # publishes its head again: the entry police hold
    assert _deliver(restarted, keeper) == [Standing.OLDER]
    latest = keeper.latest
    assert latest is not None
    assert latest.seq == 12
    assert [c.seq for c in _keeper(pki, keeper.path).held] == [12]  # kept across restarts
    report = verify_store(trail.store, pki.fresh_trust(), keeper.held)
    assert report.ok, report.broken
    assert report.proof is not None
    assert (report.proof.old_seq, report.proof.new_seq, report.proof.verified) == (12, 12, True)


def test_a_tail_cut_with_its_seal_and_an_old_seal_restored_is_found_by_the_agencies_copy(
    trail: Trail, pipeline: Pipeline, pki: Pki, tmp_path: Path
) -> None:
    """The rollback the store alone cannot show: the agency's checkpoint proves it.

    Entries 11 and 12 are deleted with their seal, and the genuine seal of entry 10 (signed
    earlier) is put back: the store verifies on its own, but not against what police hold.
    """
    keeper = _keeper(pki, tmp_path / "police.jsonl")
    records = decisions(pipeline, pki, PEOPLE)
    trail.writer.write(records[:10])
    old_seal = trail.store.seal()
    assert old_seal is not None
    assert old_seal.seq == 10
    _deliver(trail.writer, keeper)
    trail.writer.write(records[10:])
    _deliver(trail.writer, keeper)
    for statement in ("DELETE FROM audit_entries WHERE seq > 10", "DELETE FROM audit_seal"):
        trail.execute(statement)
    trail.store.set_seal(old_seal)
    trail.execute("UPDATE audit_published SET seq = 10")
    assert verify_store(trail.store, pki.fresh_trust()).ok  # the store alone is fooled
    report = verify_store(trail.store, pki.fresh_trust(), keeper.held)
    assert report.broken is not None
    assert report.broken.seq == 12
    assert "rolled back" in report.broken.problem
    with pytest.raises(TamperedStore, match="head is entry 10"):
        trail.writer.write(records[:1])  # the running writer notices on its next batch


def test_a_restarted_writer_on_a_store_behind_its_published_checkpoint_refuses(
    trail: Trail, pipeline: Pipeline, pki: Pki
) -> None:
    """A rolled-back store whose publication mark was left alone stops the writer at start."""
    trail.writer.write(decisions(pipeline, pki, PEOPLE))
    trail.writer.published(trail.writer.outbox[-1])
    trail.execute("DELETE FROM audit_entries WHERE seq > 10")
    with pytest.raises(TamperedStore, match="rolled back"):
        _restarted(trail, pki)


def test_a_rewritten_trail_published_again_conflicts_with_the_agencies_copy(
    trail: Trail, pipeline: Pipeline, pki: Pki, tmp_path: Path
) -> None:
    """A trail rebuilt with other entries and re-signed (stolen key) cannot extend the held one."""
    keeper = _keeper(pki, tmp_path / "police.jsonl")
    records = decisions(pipeline, pki, PEOPLE)
    trail.writer.write(records[:6])
    _deliver(trail.writer, keeper)
    for table in ("audit_entries", "audit_checkpoints", "audit_seal", "audit_published"):
        trail.execute(f"DELETE FROM {table}")  # noqa: S608 - test tables
    forged = _restarted(trail, pki)
    forged.write(records[6:])  # six other decisions, signed with the gateway's real key
    forged.write(records[:2])
    standings = _deliver(forged, keeper)
    assert standings[0] is Standing.CONFLICT  # entry 5 signed after the held entry 6
    assert keeper.held[0].seq == 6  # the genuine checkpoint stays as evidence
    report = verify_store(trail.store, pki.fresh_trust(), keeper.held)
    assert report.broken is not None
    assert "held outside" in report.broken.problem


def test_a_record_not_signed_by_the_gateway_is_refused(pki: Pki, tmp_path: Path) -> None:
    """An agency's key, or a changed root, makes a checkpoint record refused, not held."""
    keeper = _keeper(pki, tmp_path / "police.jsonl")
    key = load_signing_key(pki.directory, "police", embed=True)
    signed = sign_checkpoint(1, "ab" * 32, "cd" * 32, NOW, key)
    with pytest.raises(RefusedCheckpoint, match="not the gateway"):
        keeper.accept(PublishedCheckpoint(signed, None, None, ()).encode())
    gateway = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
    genuine = sign_checkpoint(1, "ab" * 32, "cd" * 32, NOW, gateway)
    bent = replace(genuine, root="ef" * 32)
    with pytest.raises(RefusedCheckpoint, match="does not verify"):
        keeper.accept(PublishedCheckpoint(bent, None, None, ()).encode())
    with pytest.raises(RefusedCheckpoint, match="not JSON"):
        keeper.accept(b"\xff")
    assert keeper.held == []
    assert not keeper.path.exists()


def test_a_store_made_before_trees_gets_the_columns_and_old_checkpoints_still_verify(
    tmp_path: Path, pipeline: Pipeline, pki: Pki
) -> None:
    """An old-schema SQLite store is upgraded on open; its root-less checkpoints verify."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "CREATE TABLE audit_checkpoints (seq BIGINT NOT NULL PRIMARY KEY, head_hash TEXT"
            " NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL, certificate TEXT"
            " NOT NULL);"
            "CREATE TABLE audit_seal (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT"
            " NULL, head_hash TEXT NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL,"
            " certificate TEXT NOT NULL);"
            "CREATE TABLE audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT"
            " NULL, hash TEXT NOT NULL);"
        )
    connection.close()
    store = open_store(f"sqlite:///{path}")
    try:
        records = decisions(pipeline, pki, PEOPLE[:2])
        rows = chain((0, GENESIS_HASH), [prepare(loads_strict(r), SECRET) for r in records])
        store.append(rows)
        key = load_signing_key(pki.directory, GATEWAY_OWNER, embed=True)
        claims = canonical_bytes({"seq": 2, "head": rows[-1].hash, "at": rfc3339(NOW)})
        signature = sign_detached(claims, key, {"typ": CHECKPOINT_TYP})
        old = Checkpoint(2, rows[-1].hash, rfc3339(NOW), signature, key.x5c[0])  # no root
        store.add_checkpoint(old)
        store.set_seal(old)
        assert store.checkpoints() == [old]
        assert verify_store(store, pki.fresh_trust()).ok
        writer = AuditWriter(store, SECRET, key)
        assert [r.checkpoint.seq for r in writer.outbox] == [2]  # its head, now with a root
        assert writer.outbox[0].checkpoint.root is not None
        assert verify_store(store, pki.fresh_trust()).ok
    finally:
        store.close()
