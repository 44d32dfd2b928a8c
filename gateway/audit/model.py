"""The shapes shared by the audit chain, its stores and its writer (no I/O here).

An audit entry is one gateway decision, stored as canonical JSON (RFC 8785) with the data
subject replaced by a keyed hash, and chained: ``hash = SHA-256(prev_hash || body)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.trust.checkpoint import Checkpoint

__all__ = ["GENESIS_HASH", "Anchor", "Checkpoint", "StoredEntry"]

GENESIS_HASH = "0" * 64


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One row of the chain."""

    seq: int
    decision_id: str
    event_id: str | None
    subject_key: str | None  # HMAC-SHA256 (hex) of the event's subject, keyed by the audit service
    decided_at: str  # RFC 3339, as in the body; kept apart for retention and queries
    body: str  # canonical JSON text of the audit record as stored
    prev_hash: str  # hex
    hash: str  # hex


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the stored chain starts after a retention cut: the last archived entry.

    ``frontier`` is the compact range (RFC 9162 hash tree, hex hashes largest first) of the
    entries up to ``seq``, so the tree's roots can still be computed after them; ``None``
    for a cut made before trees were kept.
    """

    seq: int
    hash: str
    frontier: tuple[str, ...] | None = None
