"""Signed checkpoints of the audit trail, and the record that publishes them to the agencies.

A checkpoint is the gateway's detached JWS over ``{"seq", "head", "root", "at"}``: the trail's
entry ``seq`` has chain hash ``head``, and the RFC 9162 hash tree over entries ``1..seq`` has
root ``root``. The audit writer stores them and publishes each one on
``xgw.audit.checkpoints`` as a :class:`PublishedCheckpoint`, with a consistency proof from
the one it published before (RFC 9162 2.1.4). Agencies keep the latest
(:class:`connectors.checkpoints.CheckpointKeeper`): a trail rolled back or rewritten after
that can no longer be proven consistent with what they hold (``xgw audit verify
--checkpoints``).

This module is here, beside the certificates, and not in :mod:`gateway.audit`, because agency
clients verify these records with nothing but the exchange root; the wire format is
docs/audit.md, "Checkpoints held by the agencies".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from gateway.clock import rfc3339
from gateway.errors import Rejection
from gateway.names import GATEWAY_OWNER
from gateway.trust.store import TrustStore
from gateway.wire.canonical import canonical_bytes, loads_strict
from gateway.wire.jws import JwsError, parse_detached, sign_detached
from gateway.wire.keys import SigningKey
from gateway.wire.merkle import verify_consistency

CHECKPOINT_TYP = "xgw-audit-checkpoint+jws"
RECORD_VERSION = 1
_HEX_HASH_CHARS = 64
_MAX_PROOF_HASHES = 128  # two per level of a tree of 2**64 entries


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the chain's entry ``seq`` has hash ``head_hash``.

    ``root`` is the RFC 9162 root (hex) of the hash tree over entries ``1..seq``; it is
    ``None`` only in checkpoints stored before trees were kept, which sign no root.
    """

    seq: int
    head_hash: str
    signed_at: str  # RFC 3339
    signature: str  # detached JWS by the gateway key over the canonical checkpoint claims
    certificate: str  # base64 DER of the signing certificate
    root: str | None = None
    # base64 DER of an RFC 3161 time-stamp token over stamped_bytes(); None when no TSA is
    # configured or it did not answer (gateway.trust.timestamp).
    tst: str | None = None


def _claims(seq: int, head_hash: str, root: str | None, signed_at: str) -> bytes:
    claims: dict[str, Any] = {"seq": seq, "head": head_hash, "at": signed_at}
    if root is not None:
        claims["root"] = root
    return canonical_bytes(claims)


def sign_checkpoint(
    seq: int, head_hash: str, root: str, now: datetime, key: SigningKey
) -> Checkpoint:
    """The gateway's signed statement that entry ``seq`` has ``head_hash`` and tree ``root``."""
    if not key.x5c:
        raise ValueError("checkpoints carry the signing certificate: load the key with embed=True")
    signed_at = rfc3339(now)
    claims = _claims(seq, head_hash, root, signed_at)
    signature = sign_detached(claims, key, {"typ": CHECKPOINT_TYP})
    return Checkpoint(seq, head_hash, signed_at, signature, key.x5c[0], root)


def stamped_bytes(checkpoint: Checkpoint) -> bytes:
    """What an RFC 3161 time-stamp of the checkpoint covers: its compact JWS, as published.

    The JWS signs the claims, so a token over it proves the whole checkpoint existed then.
    """
    return checkpoint.signature.encode("ascii")


def checkpoint_problem(checkpoint: Checkpoint, trust: TrustStore) -> str | None:
    """Why the checkpoint's signature is not the gateway's over its claims, or ``None``."""
    try:
        jws = parse_detached(checkpoint.signature)
    except JwsError as exc:
        return f"checkpoint {checkpoint.seq}: signature is malformed ({exc})"
    if jws.header.get("typ") != CHECKPOINT_TYP:
        return f"checkpoint {checkpoint.seq}: not a checkpoint signature"
    header = {**jws.header, "x5c": [checkpoint.certificate]}
    try:
        # The certificate must have been valid when the checkpoint was signed, not today:
        # a trail outlives the gateway's certificates.
        trusted = trust.resolve(header, datetime.fromisoformat(checkpoint.signed_at))
    except (Rejection, ValueError) as exc:
        reason = exc.reason.value if isinstance(exc, Rejection) else str(exc)
        return f"checkpoint {checkpoint.seq}: signing certificate refused ({reason})"
    if trusted.owner != GATEWAY_OWNER:
        return f"checkpoint {checkpoint.seq}: signed by {trusted.owner!r}, not the gateway"
    claims = _claims(checkpoint.seq, checkpoint.head_hash, checkpoint.root, checkpoint.signed_at)
    if not jws.verify(claims, trusted.key):
        return f"checkpoint {checkpoint.seq}: signature does not verify"
    return None


class CheckpointRecordError(ValueError):
    """A record of the checkpoints topic that is not a well-formed published checkpoint."""


@dataclass(frozen=True, slots=True)
class PublishedCheckpoint:
    """One record of ``xgw.audit.checkpoints``: a checkpoint and its link to the one before.

    ``consistency`` proves the tree of ``checkpoint`` extends the tree of ``previous_seq``
    leaves with root ``previous_root`` (RFC 9162 2.1.4); both are ``None`` for the first
    checkpoint the writer publishes.
    """

    checkpoint: Checkpoint
    previous_seq: int | None
    previous_root: str | None
    consistency: tuple[str, ...]

    def encode(self) -> bytes:
        """The record value: canonical JSON (RFC 8785), UTF-8."""
        previous = (
            None
            if self.previous_seq is None
            else {"seq": self.previous_seq, "root": self.previous_root}
        )
        return canonical_bytes(
            {
                "version": RECORD_VERSION,
                **_members(self.checkpoint),
                "previous": previous,
                "consistency": list(self.consistency),
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> PublishedCheckpoint:
        """Parse a record value strictly; raise :class:`CheckpointRecordError`."""
        return _published(_parse(raw))


def _published(doc: Any) -> PublishedCheckpoint:
    """The record of a parsed value, each member checked."""
    if not isinstance(doc, dict) or set(doc) - _OPTIONAL != {*_MEMBERS, *_RECORD_MEMBERS}:
        raise CheckpointRecordError("not a published checkpoint (wrong members)")
    if doc["version"] != RECORD_VERSION:
        raise CheckpointRecordError(f"unknown record version {doc['version']!r}")
    previous, proof = doc["previous"], doc["consistency"]
    if previous is not None and (
        not isinstance(previous, dict) or set(previous) != {"seq", "root"}
    ):
        raise CheckpointRecordError("previous must be null or {seq, root}")
    if not isinstance(proof, list) or len(proof) > _MAX_PROOF_HASHES:
        raise CheckpointRecordError("consistency must be a list of hashes")
    return PublishedCheckpoint(
        _checkpoint_of(doc),
        None if previous is None else _seq(previous["seq"]),
        None if previous is None else _hex(previous["root"]),
        tuple(_hex(h) for h in proof),
    )


# The members of a checkpoint, in a record and in an agency's file; a record adds the others.
_MEMBERS = frozenset({"seq", "head", "root", "at", "signature", "certificate"})
_RECORD_MEMBERS = frozenset({"version", "previous", "consistency"})
# Present only when it has a value, so records and file lines without one are as before.
_OPTIONAL = frozenset({"tst"})
_MAX_TOKEN_CHARS = 64 * 1024  # a token with its certificate chain is a few KiB


def _members(checkpoint: Checkpoint) -> dict[str, Any]:
    members = {
        "seq": checkpoint.seq,
        "head": checkpoint.head_hash,
        "root": checkpoint.root,
        "at": checkpoint.signed_at,
        "signature": checkpoint.signature,
        "certificate": checkpoint.certificate,
    }
    if checkpoint.tst is not None:
        members["tst"] = checkpoint.tst
    return members


def _checkpoint_of(doc: dict[str, Any]) -> Checkpoint:
    """The checkpoint of a parsed record or file line, each member checked."""
    return Checkpoint(
        seq=_seq(doc["seq"]),
        head_hash=_hex(doc["head"]),
        root=_hex(doc["root"]),
        signed_at=_text(doc["at"]),
        signature=_text(doc["signature"]),
        certificate=_text(doc["certificate"]),
        tst=_token(doc["tst"]) if "tst" in doc else None,
    )


def _parse(raw: bytes) -> Any:
    try:
        return loads_strict(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointRecordError(f"not JSON: {exc}") from exc


def _seq(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointRecordError(f"a sequence number must be a positive integer, not {value!r}")
    return value


def _hex(value: Any) -> str:
    if (
        not isinstance(value, str)
        or len(value) != _HEX_HASH_CHARS
        or value.strip("0123456789abcdef")
    ):
        raise CheckpointRecordError("a hash must be 64 lower-case hex digits")
    return value


def _token(value: Any) -> str:
    """A time-stamp token's base64 text (whether it verifies is ``xgw audit verify``'s job)."""
    if isinstance(value, str) and value and len(value) <= _MAX_TOKEN_CHARS:
        with contextlib.suppress(binascii.Error, ValueError):
            base64.b64decode(value, validate=True)
            return value
    raise CheckpointRecordError("tst must be the base64 DER of a time-stamp token")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise CheckpointRecordError("a text member is empty or not a string")
    return value


class Standing(StrEnum):
    """How a newly published checkpoint stands to the one an agency holds."""

    EXTENDS = "extends"  # proven by its consistency proof: it replaces the held one
    UNLINKED = "unlinked"  # newer, but its proof starts elsewhere (records missed): keep both
    OLDER = "older"  # one the agency saw before it (history read again)
    CONFLICT = "conflict"  # the trail was rolled back or rewritten after the held one


@dataclass(frozen=True, slots=True)
class Judgement:
    """What :func:`judge` found, and why in one line."""

    standing: Standing
    why: str


def judge(held: Checkpoint | None, record: PublishedCheckpoint) -> Judgement:  # noqa: PLR0911 - a decision table
    """How ``record`` (whose signature was checked) stands to the checkpoint ``held``."""
    new = record.checkpoint
    if held is None:
        return Judgement(Standing.EXTENDS, f"first checkpoint held: entry {new.seq}")
    if new.seq < held.seq:
        if datetime.fromisoformat(new.signed_at) > datetime.fromisoformat(held.signed_at):
            return Judgement(
                Standing.CONFLICT,
                f"the gateway signed entry {new.seq} at {new.signed_at}, after it had signed "
                f"entry {held.seq} at {held.signed_at}: the trail was rolled back",
            )
        return Judgement(Standing.OLDER, f"entry {new.seq} is before the held {held.seq}")
    if new.seq == held.seq:
        if (new.head_hash, new.root) != (held.head_hash, held.root):
            return Judgement(
                Standing.CONFLICT,
                f"two different trails signed up to entry {new.seq}: the trail was rewritten",
            )
        return Judgement(Standing.OLDER, f"entry {new.seq} is the held one")
    if record.previous_seq != held.seq or held.root is None:
        return Judgement(
            Standing.UNLINKED,
            f"entry {new.seq} is proven from entry {record.previous_seq}, not from the held "
            f"{held.seq}: keep both and prove them with `xgw audit verify --checkpoints`",
        )
    proven = (
        record.previous_root == held.root
        and new.root is not None
        and verify_consistency(
            held.seq,
            new.seq,
            bytes.fromhex(held.root),
            bytes.fromhex(new.root),
            [bytes.fromhex(h) for h in record.consistency],
        )
    )
    if not proven:
        return Judgement(
            Standing.CONFLICT,
            f"entry {new.seq}'s tree does not extend the held entry {held.seq}'s: the trail "
            "was rewritten",
        )
    return Judgement(Standing.EXTENDS, f"entry {new.seq} extends the held {held.seq}")


def checkpoint_to_json(checkpoint: Checkpoint) -> str:
    """One line of an agency's checkpoint file."""
    return json.dumps(_members(checkpoint), ensure_ascii=False)


def checkpoint_from_json(line: str | bytes) -> Checkpoint:
    """Read a line of an agency's checkpoint file, or a record of the checkpoints topic.

    Raise :class:`CheckpointRecordError` for anything else.
    """
    doc = _parse(line.encode() if isinstance(line, str) else line)
    if isinstance(doc, dict) and "version" in doc:
        return _published(doc).checkpoint
    if not isinstance(doc, dict) or set(doc) - _OPTIONAL != _MEMBERS:
        raise CheckpointRecordError("not a checkpoint (wrong members)")
    return _checkpoint_of(doc)
