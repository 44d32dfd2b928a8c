"""Requests the gateway delivered and waits to see answered: the pending-request table.

A request is remembered on the ingress partition it arrived on, under its event id. Its
response must carry that id as ``correlationid`` and the same subject, so it arrives on the same
partition number (records are keyed by subject) and the same worker finds the entry. An entry is
``open`` until it is answered or its deadline passes; closed entries stay until the replay
window forgets them, so a late or second response is told apart from one to an unknown request.

:class:`MemoryPending` serves tests and the benchmark; the worker keeps the table in its
changelogged state (:class:`gateway.runtime.tables.StatePending`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

OPEN = "open"
ANSWERED = "answered"
TIMED_OUT = "timed_out"


@dataclass(frozen=True, slots=True)
class Pending:
    """One delivered request: who asked, about whom, by when, and where it was read."""

    requester: str
    request_type: str
    subject: str
    deadline: float  # epoch seconds
    offset: int  # of the request on its ingress topic (for the timeout receipt)
    record_sha256: str
    status: str = OPEN
    answered_by: str | None = None  # the response's event id

    def to_json(self) -> list[object]:
        """Compact form for the changelog."""
        return [
            self.requester,
            self.request_type,
            self.subject,
            self.deadline,
            self.offset,
            self.record_sha256,
            self.status,
            self.answered_by,
        ]

    @classmethod
    def from_json(cls, value: list[object]) -> Pending:
        """Inverse of :meth:`to_json`."""
        requester, request_type, subject, deadline, offset, sha, status, answered_by = value
        return cls(
            str(requester),
            str(request_type),
            str(subject),
            float(deadline),  # type: ignore[arg-type] # written by to_json
            int(offset),  # type: ignore[call-overload] # written by to_json
            str(sha),
            str(status),
            None if answered_by is None else str(answered_by),
        )

    def answered(self, response_id: str) -> Pending:
        """This entry, closed by ``response_id``."""
        return replace(self, status=ANSWERED, answered_by=response_id)

    def timed_out(self) -> Pending:
        """This entry, closed by its deadline."""
        return replace(self, status=TIMED_OUT)


class PendingRequests(Protocol):
    """Where the pipeline keeps pending requests, per ingress partition."""

    def get(self, partition: int, request_id: str) -> Pending | None:
        """The entry of ``request_id``, or ``None``."""
        ...

    def put(self, partition: int, request_id: str, pending: Pending) -> None:
        """Store or replace an entry."""
        ...

    def due(self, now: datetime, partition: int | None = None) -> list[tuple[int, str, Pending]]:
        """Open entries whose deadline has passed, on the partitions this worker holds.

        With ``partition``, on that one alone.
        """
        ...


class MemoryPending:
    """Pending requests in a dict (tests, the benchmark, a single process)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[int, str], Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, partition: int, request_id: str) -> Pending | None:
        """The entry of ``request_id``, or ``None``."""
        return self._entries.get((partition, request_id))

    def put(self, partition: int, request_id: str, pending: Pending) -> None:
        """Store or replace an entry."""
        self._entries[partition, request_id] = pending

    def due(self, now: datetime, partition: int | None = None) -> list[tuple[int, str, Pending]]:
        """Open entries whose deadline has passed (on ``partition`` alone, if given)."""
        at = now.timestamp()
        return [
            (p, request_id, pending)
            for (p, request_id), pending in self._entries.items()
            if pending.status == OPEN and pending.deadline <= at and partition in (None, p)
        ]
