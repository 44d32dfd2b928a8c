"""Stamping by the book, for tests: the gateway stamps only through ``stamp_leaves_encoded``.

These build the stamped events as dicts straight from RFC 9162 and docs/envelope.md (the proof
text from :func:`encode_proof`), so the production splice can be held against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.core.profile import STAMP, STAMP_PROOF
from gateway.core.stamp import Leaf, leaf, stamp_header
from gateway.wire import b64url
from gateway.wire.jws import sign_detached
from gateway.wire.keys import SigningKey
from gateway.wire.merkle import merkle_tree


def encode_proof(index: int, size: int, path: list[bytes]) -> str:
    """``<index>.<size>[.<sibling>...]``: decimals, then base64url hashes from the leaf up."""
    return ".".join((str(index), str(size), *(b64url.encode(h) for h in path)))


def stamp_leaves(leaves: list[Leaf], key: SigningKey) -> list[dict[str, Any]]:
    """Stamp ``leaves`` with one signature over their tree; return the stamped events in order."""
    if not leaves:
        return []
    root, paths = merkle_tree([item.hash for item in leaves])
    size = len(leaves)
    token = sign_detached(root, key, stamp_header(size))
    return [
        {**item.event, STAMP: token, STAMP_PROOF: encode_proof(index, size, path)}
        for index, (item, path) in enumerate(zip(leaves, paths, strict=True))
    ]


def stamp_many(events: Iterable[Mapping[str, Any]], key: SigningKey) -> list[dict[str, Any]]:
    """Stamp every event with one gateway signature (over the root of their hash tree)."""
    return stamp_leaves([leaf(event) for event in events], key)


def stamp(event: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """Stamp one event (a tree of size 1), replacing any earlier stamp."""
    return stamp_leaves([leaf(event)], key)[0]
