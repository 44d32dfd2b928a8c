"""The audit store, the same suite over SQLite and PostgreSQL (a fresh schema per test)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gateway.audit.model import GENESIS_HASH, Anchor, Checkpoint, StoredEntry
from gateway.audit.store import (
    AuditStore,
    ChainConflict,
    PostgresStore,
    SQLiteStore,
    open_store,
)
from gateway.errors import ConfigError
from tests.conftest import POSTGRES_URL


def entry(seq: int, *, decision: str | None = None, event: str | None = None, subject: str = "s"):
    """A row at ``seq``; hashes are arbitrary hex, the chaining rules are tested elsewhere."""
    return StoredEntry(
        seq=seq,
        decision_id=decision or f"d-{seq}",
        event_id=event if event is not None else f"e-{seq}",
        subject_key=subject,
        decided_at=f"2025-01-01T00:00:{seq % 60:02d}Z",
        body=f'{{"seq":{seq}}}',
        prev_hash=f"{seq - 1:064x}",
        hash=f"{seq:064x}",
    )


def checkpoint(seq: int) -> Checkpoint:
    return Checkpoint(seq, f"{seq:064x}", "2025-01-01T00:00:00Z", f"sig-{seq}", "cert")


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """Opens stores on one database (a file or a schema), all closed at teardown."""
    opened: list[AuditStore] = []
    if request.param == "sqlite":
        make = lambda: SQLiteStore(tmp_path / "audit.db")  # noqa: E731
    else:
        name = request.getfixturevalue("schema")
        make = lambda: PostgresStore(POSTGRES_URL, schema=name)  # noqa: E731

    def open_one() -> AuditStore:
        store = make()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(opener) -> AuditStore:
    return opener()


def test_empty_store_heads_at_genesis(store: AuditStore) -> None:
    """An empty store without an anchor reports (0, GENESIS_HASH), no entries and no anchor."""
    assert store.head() == (0, GENESIS_HASH)
    assert (store.last_seq(), store.count(), store.anchor()) == (0, 0, None)
    assert list(store.entries()) == []


def test_append_round_trip(store: AuditStore) -> None:
    """Appended rows come back unchanged, in order, and the head is the last of them."""
    rows = [replace(entry(1), event_id=None, subject_key=None), entry(2), entry(3)]
    assert store.append(rows) == 3
    assert list(store.entries()) == rows
    assert list(store.entries(after_seq=1)) == rows[1:]
    assert store.head() == (3, rows[2].hash)
    assert (store.last_seq(), store.count()) == (3, 3)
    assert store.append([]) == 0


def test_reappend_is_idempotent(store: AuditStore) -> None:
    """Appending decision ids already stored inserts nothing and returns 0."""
    rows = [entry(1), entry(2)]
    store.append(rows)
    assert store.append(rows) == 0
    assert store.append([rows[1], entry(3)]) == 1
    assert store.count() == 3


def test_gap_is_a_conflict_and_inserts_nothing(store: AuditStore) -> None:
    """A batch whose first new row is not head + 1, or that skips a seq, is refused whole."""
    store.append([entry(1)])
    with pytest.raises(ChainConflict):
        store.append([entry(3), entry(4)])
    with pytest.raises(ChainConflict):
        store.append([entry(2), entry(4)])
    assert list(store.entries()) == [entry(1)]


def test_second_writer_cannot_fork(opener) -> None:
    """A writer whose head is stale (another appended meanwhile) gets ChainConflict."""
    first, second = opener(), opener()
    assert first.append([entry(1), entry(2)]) == 2
    with pytest.raises(ChainConflict):
        second.append([entry(1, decision="other-1")])
    assert second.head() == (2, entry(2).hash)


def test_racing_writers_append_once(opener) -> None:
    """Two writers appending the same seq at the same moment: one wins, the other conflicts."""
    stores = [opener(), opener()]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def write(index: int) -> None:
        barrier.wait()
        try:
            outcomes.append(stores[index].append([entry(1, decision=f"w{index}")]))
        except ChainConflict as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(type, outcomes), key=str) == sorted([int, ChainConflict], key=str)
    assert stores[0].count() == 1


def test_duplicate_decision_in_one_batch_rolls_back(store: AuditStore) -> None:
    """The database's unique decision_id refuses a batch naming one decision twice, atomically."""
    with pytest.raises(ChainConflict):
        store.append([entry(1), entry(2, decision="d-1")])
    assert store.count() == 0


def test_known_decisions(store: AuditStore) -> None:
    """known_decisions returns exactly the stored ones among the ids asked."""
    store.append([entry(1), entry(2)])
    assert store.known_decisions(["d-2", "d-9", "d-1"]) == {"d-1", "d-2"}
    assert store.known_decisions([]) == set()


def test_by_subject_and_by_event(store: AuditStore) -> None:
    """by_subject and by_event return the matching entries in ascending seq."""
    rows = [
        entry(1, subject="a", event="x"),
        entry(2, subject="b", event="y"),
        entry(3, subject="a", event="x"),
    ]
    store.append(rows)
    assert store.by_subject("a") == [rows[0], rows[2]]
    assert store.by_event("y") == [rows[1]]
    assert store.by_subject("nobody") == []


def test_checkpoints_round_trip(store: AuditStore) -> None:
    """Checkpoints come back by seq; the same one again is a no-op, another hash a conflict."""
    store.add_checkpoint(checkpoint(5))
    store.add_checkpoint(checkpoint(2))
    store.add_checkpoint(checkpoint(5))
    assert store.checkpoints() == [checkpoint(2), checkpoint(5)]
    with pytest.raises(ChainConflict):
        store.add_checkpoint(Checkpoint(5, "f" * 64, "2025-01-01T00:00:00Z", "s", "c"))


def test_seal_is_replaced(store: AuditStore) -> None:
    """The seal is absent at first, then always the last one set."""
    assert store.seal() is None
    store.set_seal(checkpoint(1))
    store.set_seal(checkpoint(2))
    assert store.seal() == checkpoint(2)


def test_cut_anchors_the_chain(store: AuditStore) -> None:
    """cut() deletes and returns entries up to it, keeps the checkpoint there, sets the anchor."""
    rows = [entry(seq) for seq in range(1, 6)]
    store.append(rows)
    for seq in (1, 3, 5):
        store.add_checkpoint(checkpoint(seq))
    frontier = ("ab" * 32, "cd" * 32)
    assert store.cut(3, frontier) == rows[:3]
    assert list(store.entries()) == rows[3:]
    assert [c.seq for c in store.checkpoints()] == [3, 5]
    assert store.anchor() == Anchor(3, rows[2].hash, frontier)
    assert store.cut(5, None) == rows[3:]
    assert store.anchor() == Anchor(5, rows[4].hash, None)
    assert store.head() == (5, rows[4].hash)
    assert (store.count(), store.last_seq()) == (0, 0)
    assert store.append([entry(6)]) == 1


def test_cut_at_missing_entry_is_value_error(store: AuditStore) -> None:
    """cut() at a seq that is not stored raises ValueError and changes nothing."""
    store.append([entry(1)])
    with pytest.raises(ValueError, match="no audit entry"):
        store.cut(2, None)
    assert (store.count(), store.anchor()) == (1, None)


def test_entries_streams_many_chunks(store: AuditStore) -> None:
    """entries() yields more than one chunk of rows, in order, from any starting seq."""
    rows = [entry(seq) for seq in range(1, 2501)]
    assert store.append(rows) == 2500
    assert [e.seq for e in store.entries()] == list(range(1, 2501))
    assert [e.seq for e in store.entries(after_seq=1200)] == list(range(1201, 2501))


def test_reopen_keeps_data(opener) -> None:
    """A store opened again on the same database sees what an earlier one wrote."""
    first = opener()
    first.append([entry(1)])
    first.add_checkpoint(checkpoint(1))
    first.close()
    again = opener()
    assert (again.head(), again.checkpoints()) == ((1, entry(1).hash), [checkpoint(1)])


def test_sqlite_is_durable(tmp_path: Path) -> None:
    """The SQLite store runs in WAL mode with synchronous=FULL."""
    store = SQLiteStore(tmp_path / "audit.db")
    try:
        assert store._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        store.close()


def test_open_store_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///relative and sqlite:////absolute create parent folders; sqlite:// is memory."""
    monkeypatch.chdir(tmp_path)
    for url, path in (
        ("sqlite:///var/rel/audit.db", tmp_path / "var/rel/audit.db"),
        (f"sqlite:///{tmp_path}/abs/audit.db", tmp_path / "abs/audit.db"),
    ):
        store = open_store(url)
        store.append([entry(1)])
        store.close()
        assert path.is_file()
    memory = open_store("sqlite://")
    assert memory.append([entry(1)]) == 1
    memory.close()


def test_open_store_postgres_search_path(schema: str) -> None:
    """A postgresql:// URL with options=-csearch_path keeps the tables in that schema."""
    store = open_store(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    try:
        store.append([entry(1)])
    finally:
        store.close()
    with psycopg.connect(POSTGRES_URL) as conn:
        query = sql.SQL("SELECT count(*) FROM {}.audit_entries").format(sql.Identifier(schema))
        found = conn.execute(query).fetchone()
    assert found == (1,)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://localhost/audit",
        "audit.db",
        "sqlite:relative.db",
        "postgresql://postgres@127.0.0.1:1/test",
        "postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dno_such_schema_x",
        "postgresql://[bad",
    ],
)
def test_open_store_errors_are_config_errors(url: str) -> None:
    """Unknown schemes, bad URLs and unreachable or unusable databases raise ConfigError."""
    with pytest.raises(ConfigError, match=r"^audit store: [^\n]+$"):
        open_store(url)


def test_unusable_sqlite_files_are_config_errors(tmp_path: Path) -> None:
    """A file that is not a database, or a path under a file, raises ConfigError."""
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    for path in (junk, junk / "below.db"):
        with pytest.raises(ConfigError, match=r"^audit store: "):
            SQLiteStore(path)


def test_tables_are_plain_sql(tmp_path: Path) -> None:
    """Rows are in audit_entries under the agreed column names (other tests tamper there)."""
    store = SQLiteStore(tmp_path / "audit.db")
    store.append([entry(1)])
    store.close()
    conn = sqlite3.connect(tmp_path / "audit.db")
    try:
        row = conn.execute(
            "SELECT seq, decision_id, event_id, subject_key, decided_at, body, prev_hash, hash"
            " FROM audit_entries"
        ).fetchone()
    finally:
        conn.close()
    assert StoredEntry(*row) == entry(1)
