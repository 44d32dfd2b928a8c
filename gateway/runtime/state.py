"""The worker's state, kept per ingress partition and changelogged to a compacted Kafka topic.

The gateway requires an ingress record's key to be its subject, so everything about one person
(an event and its replays, a request and its response) arrives on the same partition number of
the ingress topics, and the consumer group gives that partition number of every ingress topic to
one worker (range assignment over topics of equal size). That worker alone reads and writes
partition ``p`` of the state, which it writes to partition ``p`` of the changelog.

Writes go to an outbox that the worker produces together with the batch's outputs, before the
batch's offsets are committed: state is never behind the offsets it explains.

The entries live in an SQLite file, like a Kafka Streams RocksDB store: a scratch copy of the
changelog, rebuilt at every assignment and deleted on close, so it runs without a journal or
fsync and only its bounded page cache counts in the worker's memory. An entry may have a
*timer*, a name and a due time derived from its value by a rule registered for its key prefix
(:meth:`PartitionedState.schedule`); sweeps and deadline checks are indexed queries on them.

A new owner rebuilds a partition from the changelog with :meth:`PartitionedState.restore` and
:meth:`PartitionedState.adopt`. :class:`PartitionedState` is plain and synchronous and knows no
Kafka client; :func:`gateway.runtime.changelog.recover` is the Kafka adapter that reads it back.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from gateway.core.records import OutRecord
from gateway.errors import StateError

_PREFIX, _SUFFIX = "xgw-state-", ".sqlite3"  # the scratch files' names
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode
_INT64 = range(-(1 << 63), 1 << 63)  # what SQLite stores as an integer (``in`` is O(1))

Timer = tuple[str, float]  # what acts on an entry, and when (epoch seconds)
TimerRule = Callable[[Any], Timer | None]

_SCHEMA = """
CREATE TABLE entries (
    partition INTEGER NOT NULL,
    key TEXT NOT NULL,
    value NOT NULL,  -- an int of 64 bits as an INTEGER, anything else as JSON TEXT
    timer TEXT,
    due REAL,
    PRIMARY KEY (partition, key)
) WITHOUT ROWID;
CREATE INDEX entries_due ON entries (timer, due) WHERE timer IS NOT NULL;
-- The partitions adopted; entries of any other are being restored.
CREATE TABLE held (partition INTEGER PRIMARY KEY);
"""
_GET = "SELECT value FROM entries WHERE partition = ? AND key = ?"
_PUT = "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM entries WHERE partition = ? AND key = ?"
_DROP = "DELETE FROM entries WHERE partition = ?"
# Timers see only the partitions held: the entries of others are being restored.
# Of every partition held, or of one (?3; a transaction of exactly-once mode holds one's work).
_DUE = (
    "SELECT partition, key, value FROM entries WHERE timer = ?1 AND due <= ?2"
    " AND (?3 IS NULL OR partition = ?3) AND partition IN (SELECT partition FROM held)"
    " ORDER BY due"
)
_EXPIRE = (
    "DELETE FROM entries WHERE timer = ?1 AND due <= ?2"
    " AND (?3 IS NULL OR partition = ?3) AND partition IN (SELECT partition FROM held)"
    " RETURNING partition, key"
)
_COUNT = (
    "SELECT count(*) FROM entries WHERE timer = ? AND partition IN (SELECT partition FROM held)"
)
_SIZE = "SELECT count(*) FROM entries WHERE partition IN (SELECT partition FROM held)"


class PartitionedState:
    """Key/value entries per partition in an SQLite scratch file, with a changelog outbox.

    The file is created in ``directory`` (the system's temporary directory when ``None``)
    under a name of its own and deleted by :meth:`close`; files left there by killed workers
    are deleted when the next store is made. ``cache_bytes`` bounds SQLite's page cache.
    Should SQLite fail (a full disk), the store closes itself and raises :class:`StateError`
    from then on: a file half written without a journal cannot be trusted, and a restarted
    worker rebuilds it from the changelog.
    """

    def __init__(self, topic: str, cache_bytes: int, directory: Path | None = None) -> None:
        self.topic = topic
        self.path, self._db = _open(directory or Path(tempfile.gettempdir()), cache_bytes)
        self._cursor = self._db.cursor()  # one, reused: the hot path saves making one per call
        # Closes and deletes the file on close(), on garbage collection or at exit.
        self._finalizer = weakref.finalize(self, _discard, self._db, self.path)
        self._guard = _Guard(self._finalizer)
        self._held: set[int] = set()
        self._restoring: set[int] = set()  # written by restore(), not adopted yet
        self._rules: list[tuple[str, TimerRule]] = []
        self._outbox: list[OutRecord] = []

    def __len__(self) -> int:
        with self._guard:
            (count,) = self._db.execute(_SIZE).fetchone()
        return int(count)

    def __enter__(self) -> PartitionedState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store and delete its file; the state is unusable afterwards."""
        self._finalizer()

    @property
    def partitions(self) -> frozenset[int]:
        """The partitions this worker holds."""
        return frozenset(self._held)

    def owns(self, partition: int) -> bool:
        """Whether this worker holds ``partition`` (and so may decide its records)."""
        return partition in self._held

    def schedule(self, prefix: str, rule: TimerRule) -> None:
        """Give the entries whose key starts with ``prefix`` the timer ``rule`` derives.

        The rule sees the value at every put and adoption; the first matching prefix wins.
        """
        self._rules.append((prefix, rule))
        with self._guard:
            # Entries stored before the rule get their timers now (normally there are none).
            rows = self._db.execute(
                "SELECT partition, key, value FROM entries WHERE substr(key, 1, ?) = ?",
                (len(prefix), prefix),
            ).fetchall()
            self._db.executemany(
                _PUT, [self._row(p, key, _decode(value)) for p, key, value in rows]
            )

    def get(self, partition: int, key: str) -> Any:
        """The value of ``key``, or ``None``."""
        if partition not in self._held:
            raise KeyError(partition)
        try:  # not `with self._guard`, which costs a quarter of a microsecond
            row = self._cursor.execute(_GET, (partition, key)).fetchone()
        except sqlite3.Error as exc:
            raise self._guard.failed(exc) from exc
        return None if row is None else _decode(row[0])

    def put(self, partition: int, key: str, value: Any) -> None:
        """Set ``key`` (``None`` deletes it) and queue the changelog record."""
        if partition not in self._held:
            raise KeyError(partition)
        try:
            if value is None:
                self._cursor.execute(_DELETE, (partition, key))
                encoded = None
            else:
                # repr is the JSON of an int, at a tenth of the encoder's cost.
                text = repr(value) if type(value) is int else _ENCODE(value)
                self._cursor.execute(_PUT, self._row(partition, key, value, text))
                encoded = text.encode()
        except sqlite3.Error as exc:
            raise self._guard.failed(exc) from exc
        self._outbox.append(OutRecord(self.topic, key.encode(), encoded, (), partition))

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        """A snapshot of ``partition``'s entries, in key order (for tests and tools)."""
        if partition not in self._held:
            raise KeyError(partition)
        with self._guard:
            rows = self._db.execute(
                "SELECT key, value FROM entries WHERE partition = ? ORDER BY key", (partition,)
            ).fetchall()
        return ((key, _decode(value)) for key, value in rows)

    def due(
        self, timer: str, now: float, partition: int | None = None
    ) -> list[tuple[int, str, Any]]:
        """``(partition, key, value)`` of the entries whose ``timer`` is due at ``now``.

        Of every partition held, or of ``partition`` alone.
        """
        with self._guard:
            rows = self._db.execute(_DUE, (timer, now, partition)).fetchall()
        return [(partition, key, _decode(value)) for partition, key, value in rows]

    def expire(self, timer: str, now: float, partition: int | None = None) -> int:
        """Delete the entries whose ``timer`` is due at ``now`` (changelogged); return how many.

        Of every partition held, or of ``partition`` alone.
        """
        with self._guard:
            gone = self._db.execute(_EXPIRE, (timer, now, partition)).fetchall()
        self._outbox.extend(
            OutRecord(self.topic, key.encode(), None, (), partition) for partition, key in gone
        )
        return len(gone)

    def count(self, timer: str) -> int:
        """How many entries have ``timer`` (an indexed count: cheap for small sets)."""
        with self._guard:
            (found,) = self._db.execute(_COUNT, (timer,)).fetchone()
        return int(found)

    def take_outbox(self) -> list[OutRecord]:
        """The changelog records written since the last call."""
        taken, self._outbox = self._outbox, []
        return taken

    def keep_only(self, partitions: frozenset[int]) -> frozenset[int]:
        """Forget every partition not in ``partitions``; return those still to recover.

        Whatever :meth:`restore` wrote for a partition not adopted yet is forgotten too, so a
        partition to recover starts empty.
        """
        gone = self._held - partitions
        with self._guard:
            self._db.executemany(_DROP, [(p,) for p in gone | self._restoring])
            self._db.executemany("DELETE FROM held WHERE partition = ?", [(p,) for p in gone])
        self._held -= gone
        self._restoring.clear()
        return partitions - self._held

    def restore(self, partition: int, changes: Mapping[str, bytes | None]) -> None:
        """Apply changelog values (JSON, ``None`` deleted) to a partition not held yet."""
        if partition in self._held:
            raise ValueError(f"partition {partition} is held; restore only one being recovered")
        self._restoring.add(partition)
        upserts = []
        deletes = []
        for key, raw in changes.items():
            if raw is None:
                deletes.append((partition, key))
                continue
            try:
                text = raw.decode()
                upserts.append(self._row(partition, key, json.loads(text), text))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                # Not a value this version wrote (a corrupt record, an incompatible upgrade):
                # guessing would let a replay through, so the partition cannot be recovered.
                raise StateError(
                    f"changelog entry {key!r} of partition {partition} is unreadable: {exc}"
                ) from exc
        upserts.sort()  # by key: neighbours share B-tree pages (keys are unique here)
        with self._guard:
            self._db.executemany(_DELETE, deletes)
            self._db.executemany(_PUT, upserts)

    def adopt(self, partition: int, entries: Mapping[str, Any] | None = None) -> None:
        """Take over ``partition``: with ``entries``, exactly those; without, what was restored."""
        with self._guard:
            if entries is not None:
                self._db.execute(_DROP, (partition,))
                self._db.executemany(
                    _PUT, (self._row(partition, key, value) for key, value in entries.items())
                )
            self._db.execute("INSERT OR IGNORE INTO held VALUES (?)", (partition,))
        self._restoring.discard(partition)
        self._held.add(partition)

    def _row(
        self, partition: int, key: str, value: Any, text: str | None = None
    ) -> tuple[int, str, object, str | None, float | None]:
        timer = None
        for prefix, rule in self._rules:
            if key.startswith(prefix):
                timer = rule(value)
                break
        stored = value if type(value) is int and value in _INT64 else text or _ENCODE(value)
        return (partition, key, stored, *(timer or (None, None)))


def _decode(stored: object) -> Any:
    return stored if type(stored) is int else json.loads(stored)  # type: ignore[arg-type]


def _open(directory: Path, cache_bytes: int) -> tuple[Path, sqlite3.Connection]:
    """Create a scratch file in ``directory`` and open it."""
    try:
        path = _create(directory)
    except OSError as exc:
        raise StateError(f"cannot create the state file in {directory}: {exc}") from exc
    db = None
    try:
        # The finalizer may close the connection on another thread; one thread uses the store.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # A scratch copy of the changelog: nothing to roll back or make durable, one process.
        db.execute("PRAGMA journal_mode = OFF")
        db.execute("PRAGMA synchronous = OFF")
        # Locks once and for good: no locking per statement, and _remove_stale sees it is live.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("PRAGMA temp_store = FILE")
        db.execute("PRAGMA mmap_size = 0")  # mapped pages would count in the worker's RSS
        db.execute(f"PRAGMA cache_size = {-max(1, cache_bytes // 1024)}")  # negative: KiB
        db.executescript(_SCHEMA)
        # One transaction for the store's life. A commit would only write dirty pages early
        # (there is no journal to sync); SQLite writes them when its cache evicts them, while a
        # statement outside a transaction would write its pages at once.
        db.execute("BEGIN")
    except sqlite3.Error as exc:
        if db is not None:
            db.close()
        path.unlink(missing_ok=True)
        raise StateError(f"cannot open the state file {path}: {exc}") from exc
    return path, db


def _create(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale(directory)
    with tempfile.NamedTemporaryFile(
        prefix=_PREFIX, suffix=_SUFFIX, dir=directory, delete=False
    ) as file:  # an empty file is an empty database, and the name is this store's alone
        return Path(file.name)


def _remove_stale(directory: Path) -> None:
    """Delete the files of stores whose process died (killed: close never ran).

    A live store holds an exclusive SQLite lock on its file from the moment it is opened.
    """
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        try:
            probe = sqlite3.connect(path, timeout=0)
            try:
                probe.execute("BEGIN EXCLUSIVE")
            finally:
                probe.close()
            path.unlink(missing_ok=True)
        except (sqlite3.Error, OSError):
            continue  # locked by a live store, or not ours to delete


def _discard(db: sqlite3.Connection, path: Path) -> None:
    db.close()
    path.unlink(missing_ok=True)


class _Guard:
    """Turns SQLite's errors into :class:`StateError` around a block, closing the store."""

    def __init__(self, close: Callable[[], object]) -> None:
        self._close = close  # the store's finalizer: holding the store itself would be a cycle

    def failed(self, exc: sqlite3.Error) -> StateError:
        """Close the store; the error to raise instead of ``exc``."""
        self._close()
        return StateError(f"the state store failed and was closed: {exc}")

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            raise self.failed(exc) from exc
