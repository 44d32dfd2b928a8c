"""The shapes shared by the audit chain, its stores and its writer (no I/O here).

An audit entry is one gateway decision, stored as canonical JSON (RFC 8785) with the data
subject replaced by a keyed hash, and chained: ``hash = SHA-256(prev_hash || body)``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
class Checkpoint:
    """A signed statement that the chain's entry ``seq`` has hash ``head_hash``."""

    seq: int
    head_hash: str
    signed_at: str  # RFC 3339
    signature: str  # detached JWS by the gateway key over the canonical checkpoint claims
    certificate: str  # base64 DER of the signing certificate


@dataclass(frozen=True, slots=True)
class Anchor:
    """Where the stored chain starts after a retention cut: the last archived entry."""

    seq: int
    hash: str
