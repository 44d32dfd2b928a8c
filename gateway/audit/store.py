"""The durable store of the audit chain: SQLite (embedded default) or PostgreSQL, one interface.

The store keeps rows; it does not compute hashes. What it guarantees with the database itself
(``seq`` is the primary key, ``decision_id`` is unique, every write is one transaction) is that
the chain cannot fork: an append whose first new row does not follow the stored head is refused
with :class:`ChainConflict`, so a second writer loses instead of branching the chain.

URLs for :func:`open_store`:

* ``sqlite:///var/audit.db`` (relative path), ``sqlite:////srv/xgw/audit.db`` (absolute path),
  ``sqlite://`` (in memory, tests only). Parent folders are created.
* ``postgresql://user@host:5432/db`` (or ``postgres://``), any libpq URI. To keep the tables in
  a schema other than the default, use libpq's own option:
  ``postgresql://host/db?options=-csearch_path%3Daudit`` (the schema must exist).

Errors::

    XgwError
    ├── ConfigError             (gateway.errors) bad store URL, database unreachable or unusable
    └── AuditStoreError         the database failed while reading or writing the chain
        └── ChainConflict       a write would fork the chain (another writer got there first)

``cut`` raises :class:`ValueError` for a ``upto_seq`` that is not a stored entry (a caller bug).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import TupleRow

from gateway.audit.model import GENESIS_HASH, Anchor, Checkpoint, StoredEntry
from gateway.errors import ConfigError, XgwError

CHUNK = 1000  # rows per query when streaming entries(), and ids per IN (...) lookup
CONNECT_TIMEOUT_SECONDS = 10  # libpq waits forever by default

_ENTRY_COLUMNS = "seq, decision_id, event_id, subject_key, decided_at, body, prev_hash, hash"
_CHECKPOINT_COLUMNS = "seq, head_hash, signed_at, signature, certificate, root, tst"
_DDL = (
    "CREATE TABLE IF NOT EXISTS audit_entries (seq BIGINT NOT NULL PRIMARY KEY,"
    " decision_id TEXT UNIQUE NOT NULL, event_id TEXT, subject_key TEXT,"
    " decided_at TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_entries_event_id ON audit_entries (event_id)",
    "CREATE INDEX IF NOT EXISTS audit_entries_subject_key ON audit_entries (subject_key)",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (seq BIGINT NOT NULL PRIMARY KEY,"
    " head_hash TEXT NOT NULL, signed_at TEXT NOT NULL, signature TEXT NOT NULL,"
    " certificate TEXT NOT NULL, root TEXT, tst TEXT)",
    "CREATE TABLE IF NOT EXISTS audit_anchor (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL, hash TEXT NOT NULL, frontier TEXT)",
    "CREATE TABLE IF NOT EXISTS audit_seal (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL, head_hash TEXT NOT NULL, signed_at TEXT NOT NULL,"
    " signature TEXT NOT NULL, certificate TEXT NOT NULL, root TEXT, tst TEXT)",
    # The last checkpoint the writer published to the agencies (its next proof starts there).
    "CREATE TABLE IF NOT EXISTS audit_published (id INTEGER PRIMARY KEY CHECK (id = 1),"
    " seq BIGINT NOT NULL, root TEXT NOT NULL)",
)
# Columns added since the first release; stores made before get them on open (NULL in old rows).
_ADDED_COLUMNS = (
    ("audit_checkpoints", "root"),
    ("audit_seal", "root"),
    ("audit_anchor", "frontier"),
    # RFC 3161 time-stamp tokens of checkpoints (the seal's stays NULL: seals are not stamped).
    ("audit_checkpoints", "tst"),
    ("audit_seal", "tst"),
)
_INSERT_ENTRY = f"INSERT INTO audit_entries ({_ENTRY_COLUMNS}) VALUES ({', '.join('?' * 8)})"  # noqa: S608 - constant
_INSERT_CHECKPOINT = (
    f"INSERT INTO audit_checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant
)
_INSERT_SEAL = f"INSERT INTO audit_seal (id, {_CHECKPOINT_COLUMNS}) VALUES (1, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608 - constant
_CONFLICT = "the audit store refused a duplicate seq or decision_id: another writer appended?"


class AuditStoreError(XgwError):
    """The audit database failed while reading or writing the chain."""


class ChainConflict(AuditStoreError):
    """A write would fork the chain: its rows do not follow the stored head."""


class AuditStore(Protocol):
    """Where the audit chain, its signed checkpoints and its retention anchor are kept."""

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; else the anchor's; else ``(0, GENESIS_HASH)``."""

    def append(self, rows: Sequence[StoredEntry]) -> int:
        """Insert the rows whose decision id is new, in one transaction; how many were new."""

    def known_decisions(self, decision_ids: Sequence[str]) -> set[str]:
        """The ones among ``decision_ids`` that are stored."""

    def entries(self, after_seq: int = 0) -> Iterator[StoredEntry]:
        """Entries with ``seq > after_seq`` in ascending order, read in chunks."""

    def last_seq(self) -> int:
        """The seq of the last stored entry, 0 when no entry is stored."""

    def count(self) -> int:
        """How many entries are stored."""

    def by_subject(self, subject_key: str) -> list[StoredEntry]:
        """The entries about one subject key, ascending seq."""

    def by_event(self, event_id: str) -> list[StoredEntry]:
        """The entries about one event id, ascending seq."""

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a signed checkpoint (again storing the same seq and hash is a no-op)."""

    def checkpoints(self) -> list[Checkpoint]:
        """All stored checkpoints, ascending seq."""

    def anchor(self) -> Anchor | None:
        """Where the stored chain starts after a retention cut, if one happened."""

    def cut(self, upto_seq: int, frontier: Sequence[str] | None) -> list[StoredEntry]:
        """Delete entries up to ``upto_seq`` and anchor the chain (and its tree) there.

        ``frontier`` is the hash tree's compact range at ``upto_seq``; returns the deleted
        entries.
        """

    def published(self) -> tuple[int, str] | None:
        """(seq, root) of the last checkpoint published to the agencies, if any."""

    def set_published(self, seq: int, root: str) -> None:
        """Record that the checkpoint of entry ``seq`` with tree ``root`` was published."""

    def seal(self) -> Checkpoint | None:
        """The latest signed checkpoint of the head (replaced after every batch), if any."""

    def set_seal(self, checkpoint: Checkpoint) -> None:
        """Replace the seal with ``checkpoint``."""

    def close(self) -> None:
        """Release the connection (idempotent)."""


class _Session:
    """Statements inside one transaction, written with ``?`` placeholders for both backends."""

    def __init__(self, cursor: sqlite3.Cursor | psycopg.Cursor[TupleRow], mark: str) -> None:
        self._cursor = cursor
        self._mark = mark

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._cursor.execute(query.replace("?", self._mark), params).fetchall())

    def run(self, query: str, params: Sequence[Any] = ()) -> None:
        self._cursor.execute(query.replace("?", self._mark), params)

    def run_many(self, query: str, params: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(query.replace("?", self._mark), params)


class _SqlStore(AuditStore):
    """The chain logic once, over the ``_session`` each backend provides."""

    def __init__(self) -> None:
        # One connection per store; the lock keeps threads (to_thread, executors) from
        # interleaving statements of two transactions on it.
        self._lock = threading.RLock()

    @abstractmethod
    def _session(self, *, write: bool) -> AbstractContextManager[_Session]:
        """A transaction; ``write`` ones are serialised against other writers."""

    # The columns of a table (one placeholder, the table's name), in each backend's catalogue.
    _COLUMNS_QUERY: str

    def _create(self, db: _Session) -> None:
        for statement in _DDL:
            db.run(statement)
        for table, column in _ADDED_COLUMNS:
            if column not in {str(r[0]) for r in db.rows(self._COLUMNS_QUERY, (table,))}:
                db.run(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    @staticmethod
    def _head(db: _Session) -> tuple[int, str]:
        last = db.rows("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1")
        if not last:
            last = db.rows("SELECT seq, hash FROM audit_anchor WHERE id = 1")
        return (int(last[0][0]), str(last[0][1])) if last else (0, GENESIS_HASH)

    @staticmethod
    def _known(db: _Session, decision_ids: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(decision_ids), CHUNK):
            chunk = decision_ids[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            query = f"SELECT decision_id FROM audit_entries WHERE decision_id IN ({marks})"  # noqa: S608 - only placeholders
            known.update(str(r[0]) for r in db.rows(query, chunk))
        return known

    def _select(self, where: str, params: Sequence[Any], tail: str = "") -> list[StoredEntry]:
        query = f"SELECT {_ENTRY_COLUMNS} FROM audit_entries WHERE {where} ORDER BY seq {tail}"  # noqa: S608 - constant text
        with self._session(write=False) as db:
            return [StoredEntry(*r) for r in db.rows(query, params)]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; else the anchor's; else ``(0, GENESIS_HASH)``."""
        with self._session(write=False) as db:
            return self._head(db)

    def append(self, rows: Sequence[StoredEntry]) -> int:
        """Insert the rows whose decision id is new, in one transaction; how many were new."""
        if not rows:
            return 0
        with self._session(write=True) as db:
            known = self._known(db, [row.decision_id for row in rows])
            fresh = [row for row in rows if row.decision_id not in known]
            if not fresh:
                return 0
            expected = self._head(db)[0] + 1
            for offset, row in enumerate(fresh):
                if row.seq != expected + offset:
                    raise ChainConflict(
                        f"audit entry {row.seq} does not follow {expected + offset - 1}:"
                        " another writer appended?"
                    )
            db.run_many(_INSERT_ENTRY, [astuple(row) for row in fresh])
        return len(fresh)

    def known_decisions(self, decision_ids: Sequence[str]) -> set[str]:
        """The ones among ``decision_ids`` that are stored."""
        with self._session(write=False) as db:
            return self._known(db, list(decision_ids))

    def entries(self, after_seq: int = 0) -> Iterator[StoredEntry]:
        """Entries with ``seq > after_seq`` in ascending order, read in chunks."""
        # Keyset pages, each its own short transaction: no cursor or lock outlives a chunk,
        # so a slow (or abandoned) reader never blocks the writer.
        last = after_seq
        while True:
            chunk = self._select("seq > ?", (last, CHUNK), "LIMIT ?")
            yield from chunk
            if len(chunk) < CHUNK:
                return
            last = chunk[-1].seq

    def last_seq(self) -> int:
        """The seq of the last stored entry, 0 when no entry is stored."""
        with self._session(write=False) as db:
            return int(db.rows("SELECT COALESCE(MAX(seq), 0) FROM audit_entries")[0][0])

    def count(self) -> int:
        """How many entries are stored."""
        with self._session(write=False) as db:
            return int(db.rows("SELECT COUNT(*) FROM audit_entries")[0][0])

    def by_subject(self, subject_key: str) -> list[StoredEntry]:
        """The entries about one subject key, ascending seq."""
        return self._select("subject_key = ?", (subject_key,))

    def by_event(self, event_id: str) -> list[StoredEntry]:
        """The entries about one event id, ascending seq."""
        return self._select("event_id = ?", (event_id,))

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a signed checkpoint (again storing the same seq and hash is a no-op)."""
        with self._session(write=True) as db:
            stored = db.rows(
                "SELECT head_hash FROM audit_checkpoints WHERE seq = ?", (checkpoint.seq,)
            )
            if stored:
                if stored[0][0] != checkpoint.head_hash:
                    raise ChainConflict(
                        f"a checkpoint at {checkpoint.seq} with another head hash is stored"
                    )
                return  # a restarted checkpointer signed the same head again
            db.run(_INSERT_CHECKPOINT, astuple(checkpoint))

    def seal(self) -> Checkpoint | None:
        """The latest signed checkpoint of the head, if one was set."""
        with self._session(write=False) as db:
            rows = db.rows(f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_seal WHERE id = 1")  # noqa: S608 - constant text
        return Checkpoint(*rows[0]) if rows else None

    def set_seal(self, checkpoint: Checkpoint) -> None:
        """Replace the seal with ``checkpoint``."""
        with self._session(write=True) as db:
            db.run("DELETE FROM audit_seal WHERE id = 1")
            db.run(_INSERT_SEAL, astuple(checkpoint))

    def checkpoints(self) -> list[Checkpoint]:
        """All stored checkpoints, ascending seq."""
        with self._session(write=False) as db:
            rows = db.rows(f"SELECT {_CHECKPOINT_COLUMNS} FROM audit_checkpoints ORDER BY seq")  # noqa: S608 - constant text
        return [Checkpoint(*r) for r in rows]

    def anchor(self) -> Anchor | None:
        """Where the stored chain starts after a retention cut, if one happened."""
        with self._session(write=False) as db:
            rows = db.rows("SELECT seq, hash, frontier FROM audit_anchor WHERE id = 1")
        if not rows:
            return None
        seq, hash_, frontier = rows[0]
        kept = None if frontier is None else tuple(str(h) for h in json.loads(frontier))
        return Anchor(int(seq), str(hash_), kept)

    def published(self) -> tuple[int, str] | None:
        """(seq, root) of the last checkpoint published to the agencies, if any."""
        with self._session(write=False) as db:
            rows = db.rows("SELECT seq, root FROM audit_published WHERE id = 1")
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def set_published(self, seq: int, root: str) -> None:
        """Record that the checkpoint of entry ``seq`` with tree ``root`` was published."""
        with self._session(write=True) as db:
            db.run("DELETE FROM audit_published WHERE id = 1")
            db.run("INSERT INTO audit_published (id, seq, root) VALUES (1, ?, ?)", (seq, root))

    def cut(self, upto_seq: int, frontier: Sequence[str] | None) -> list[StoredEntry]:
        """Delete entries up to ``upto_seq`` and anchor the chain (and its tree) there.

        Checkpoints before ``upto_seq`` go too; the one at ``upto_seq`` (if any) stays, so the
        anchor remains covered by a signature.
        """
        with self._session(write=True) as db:
            found = db.rows("SELECT hash FROM audit_entries WHERE seq = ?", (upto_seq,))
            if not found:
                raise ValueError(f"no audit entry {upto_seq} to cut at")
            query = f"SELECT {_ENTRY_COLUMNS} FROM audit_entries WHERE seq <= ? ORDER BY seq"  # noqa: S608 - constant text
            deleted = [StoredEntry(*r) for r in db.rows(query, (upto_seq,))]
            db.run("DELETE FROM audit_entries WHERE seq <= ?", (upto_seq,))
            db.run("DELETE FROM audit_checkpoints WHERE seq < ?", (upto_seq,))
            db.run("DELETE FROM audit_anchor WHERE id = 1")
            db.run(
                "INSERT INTO audit_anchor (id, seq, hash, frontier) VALUES (1, ?, ?, ?)",
                (upto_seq, found[0][0], None if frontier is None else json.dumps(list(frontier))),
            )
        return deleted


class SQLiteStore(_SqlStore):
    """The audit chain in a SQLite file (WAL, synchronous=FULL), or in memory for ``":memory:"``."""

    _COLUMNS_QUERY = "SELECT name FROM pragma_table_info(?)"

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        super().__init__()
        memory = str(path) == ":memory:"
        if not create and not memory:
            _check_existing_file(Path(path))
        try:
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE).
            self._conn = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"audit store: cannot open SQLite file {path}: {exc}") from exc
        try:
            if not create and not memory:
                self._check_is_audit_trail(Path(path))  # before WAL mode changes the file
            self._conn.execute("PRAGMA journal_mode=WAL")
            # An audit trail must survive power loss, not only a crash of the process.
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._session(write=True) as db:
                self._create(db)
        except (sqlite3.Error, AuditStoreError) as exc:
            self._conn.close()
            raise ConfigError(f"audit store: cannot use SQLite file {path}: {exc}") from exc

    def _check_is_audit_trail(self, path: Path) -> None:
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_entries'"
        ).fetchone()
        if found is None:
            raise AuditStoreError(f"{path} holds no audit trail (no audit_entries table)")

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[_Session]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                cursor = self._conn.cursor()
                try:
                    yield _Session(cursor, "?")
                except BaseException:
                    self._conn.rollback()
                    raise
                finally:
                    cursor.close()
                self._conn.commit()
            except sqlite3.IntegrityError as exc:
                raise ChainConflict(_CONFLICT) from exc
            except sqlite3.Error as exc:
                raise AuditStoreError(f"audit store (SQLite): {exc}") from exc

    def close(self) -> None:
        """Release the connection (idempotent)."""
        with self._lock:
            self._conn.close()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class PostgresStore(_SqlStore):
    """The audit chain in PostgreSQL; ``schema`` (which must exist) sets the search path.

    Autocommit is off and every method is one transaction. A broken connection is replaced on
    the next call.
    """

    _COLUMNS_QUERY = (
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = ?"
    )

    def __init__(self, conninfo: str, schema: str | None = None) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._schema = schema
        try:
            self._conn = self._connect()
        except psycopg.Error as exc:
            raise ConfigError(
                f"audit store: cannot connect to PostgreSQL: {_one_line(exc)}"
            ) from exc
        try:
            with self._session(write=False) as db:
                schema = db.rows("SELECT current_schema()")[0][0]  # None: none on the path exists
                if schema is not None:
                    # Two gateways starting at once must not race on the catalogue.
                    db.run("SELECT pg_advisory_xact_lock(hashtext('xgw audit store ddl'))")
                    self._create(db)
        except AuditStoreError as exc:
            self._conn.close()
            raise ConfigError(f"audit store: cannot use PostgreSQL: {exc}") from exc
        if schema is None:
            self._conn.close()
            raise ConfigError("audit store: the PostgreSQL schema to use does not exist")

    def _connect(self) -> psycopg.Connection[TupleRow]:
        conninfo = self._conninfo
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(conninfo):
            conninfo = psycopg.conninfo.make_conninfo(
                conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
        conn = psycopg.connect(conninfo, autocommit=False)
        try:
            if self._schema is not None:
                conn.execute(
                    pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(self._schema))
                )
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[_Session]:
        with self._lock:
            try:
                if self._conn.broken:
                    self._conn.close()
                    self._conn = self._connect()
                with self._conn.transaction(), self._conn.cursor() as cursor:
                    if write:
                        # Serialises writers (not readers), so head and insert see one chain.
                        cursor.execute("LOCK TABLE audit_entries IN SHARE ROW EXCLUSIVE MODE")
                    yield _Session(cursor, "%s")
            except psycopg.errors.IntegrityError as exc:
                raise ChainConflict(_CONFLICT) from exc
            except psycopg.Error as exc:
                raise AuditStoreError(f"audit store (PostgreSQL): {_one_line(exc)}") from exc

    def close(self) -> None:
        """Release the connection (idempotent)."""
        with self._lock:
            self._conn.close()


def _sqlite_path(rest: str) -> str:
    if rest in {"", "/:memory:"}:
        return ":memory:"
    path = unquote(rest.partition("?")[0])
    if not path.startswith("/") or path == "/":
        raise ConfigError("audit store: a SQLite URL is sqlite:///relative.db or sqlite:////abs.db")
    return path[1:]


def _check_existing_file(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        what = "an empty file" if path.is_file() else "no such file"
        raise ConfigError(f"no audit trail at {path}: {what} (check XGW_AUDIT_STORE or --store)")


def open_store(url: str, *, create: bool = True) -> AuditStore:
    """The store a URL names (``sqlite://...`` or ``postgresql://...``), tables created.

    With ``create=False`` (the commands that only read: verify, subject, evidence) a SQLite
    file that does not exist, is empty or holds no audit trail is a :class:`ConfigError`, and
    nothing is written: a mistyped path must not be reported as an intact, empty trail.
    """
    scheme, _, rest = url.partition("://")
    if scheme == "sqlite":
        return SQLiteStore(_sqlite_path(rest), create=create)
    if scheme in {"postgresql", "postgres"}:
        return PostgresStore(url)
    raise ConfigError(f"audit store: URL scheme {scheme[:20]!r} is not sqlite:// or postgresql://")
