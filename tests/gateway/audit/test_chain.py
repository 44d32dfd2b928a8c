"""The audit trail end to end without Kafka: writer, chain, tampering, subject, evidence, archive.

Every test runs on SQLite and on PostgreSQL; tampering is done directly in SQL, as an operator
with database access could.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gateway.audit.chain import chain, prepare, verify_evidence
from gateway.audit.ops import archive, export_evidence, subject_report, verify_store
from gateway.audit.store import AuditStore, open_store
from gateway.audit.writer import AuditWriter, load_subject_secret
from gateway.core import envelope
from gateway.core.pipeline import IngressRecord, Pipeline
from gateway.lab.forgery import Forger
from gateway.names import GATEWAY_OWNER
from gateway.trust.ca import load_signing_key
from gateway.wire.canonical import loads_strict
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
    writer = AuditWriter(store, SECRET, key, checkpoint_every=5, checkpoint_seconds=3600)
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
