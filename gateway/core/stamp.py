"""The gateway stamp: one signature over an RFC 9162 (section 2.1) hash tree of events.

The gateway stamps every delivery and receipt of a batch together. Each event, without its
stamp attributes, is a leaf; ``xgwstamp`` is the gateway's detached JWS over the tree's root
(its protected header names the tree and its size), and ``xgwstampproof`` the event's leaf
index, the tree size and its audit path: ``<index>.<size>[.<sibling>...]``, decimals then
base64url hashes from the leaf up (see docs/envelope.md). The header declares ``xgw`` critical
(``"crit": ["xgw"]``, RFC 7515 4.1.11), so a library that does not understand the signed tree
size refuses the stamp instead of ignoring it, and carries the gateway's certificate (``x5c``),
so a recipient finds a rotated gateway key without a new copy of the PKI folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.core.profile import STAMP, STAMP_ATTRIBUTES, STAMP_PROOF, canonical_or_reject
from gateway.errors import Rejection
from gateway.names import GATEWAY_OWNER
from gateway.reasons import ReasonCode
from gateway.trust.store import TrustedKey, TrustStore
from gateway.wire import b64url
from gateway.wire.canonical import canonical_bytes
from gateway.wire.jws import JwsError, parse_detached, sign_detached
from gateway.wire.keys import SigningKey
from gateway.wire.merkle import decode_proof, leaf_hash, merkle_tree, root_from_path

STAMP_TYP = "xgw-stamp+jws"
# The stamp's protected header names the tree: {"xgw": {"tree": STAMP_TREE, "size": n}}. The
# size is signed because RFC 9162 roots do not commit to it (CT signs it in the tree head).
STAMP_TREE = "rfc9162-sha256"
# "xgw" is this profile's private header parameter, so the header must declare it critical.
STAMP_CRIT = ["xgw"]


@dataclass(frozen=True, slots=True)
class Leaf:
    """An event to stamp, without its stamp attributes, its RFC 8785 bytes and leaf hash.

    Build it with :func:`leaf`; the event must not change afterwards (the hash covers it).
    """

    event: Mapping[str, Any]
    canonical: bytes
    hash: bytes


def leaf(event: Mapping[str, Any]) -> Leaf:
    """The leaf of ``event``: SHA-256(0x00 || RFC 8785 bytes of it without stamp attributes)."""
    unstamped = {k: v for k, v in event.items() if k not in STAMP_ATTRIBUTES}
    canonical = canonical_bytes(unstamped)
    return Leaf(unstamped, canonical, leaf_hash(canonical))


def stamp_header(size: int) -> dict[str, Any]:
    """The stamp's header parameters besides the key's: its type and the tree, declared critical."""
    return {"typ": STAMP_TYP, "crit": STAMP_CRIT, "xgw": {"tree": STAMP_TREE, "size": size}}


def _stamp_texts(leaves: list[Leaf], key: SigningKey) -> tuple[str, list[str]]:
    """The one stamp token over ``leaves``' tree and each leaf's proof text, in order."""
    root, paths = merkle_tree([item.hash for item in leaves])
    size = len(leaves)
    token = sign_detached(root, key, stamp_header(size))
    # A node is on the path of up to half the leaves: encode each one once.
    names: dict[bytes, str] = {}
    for path in paths:
        for node in path:
            if node not in names:
                names[node] = b64url.encode(node)
    head = f".{size}"
    proofs = [
        ".".join((f"{index}{head}", *map(names.__getitem__, path)))
        for index, path in enumerate(paths)
    ]
    return token, proofs


def stamp_leaves_encoded(leaves: list[Leaf], key: SigningKey) -> list[bytes]:
    """Stamp ``leaves`` with one signature over their tree; each stamped event as UTF-8 JSON.

    The stamp attributes are spliced into the leaf's canonical bytes (sorted keys, then the
    two stamp attributes last) instead of encoding each event a second time. Token and proof
    are base64url, digits and dots, which JSON strings hold without escaping.
    """
    if not leaves:
        return []
    token, proofs = _stamp_texts(leaves, key)
    tail = f'"{STAMP}":"{token}","{STAMP_PROOF}":"'.encode("ascii")
    return [
        b"".join(
            (item.canonical[:-1], b"," if len(item.canonical) > 2 else b"", tail)  # noqa: PLR2004 - "{}"
        )
        + proof.encode("ascii")
        + b'"}'
        for item, proof in zip(leaves, proofs, strict=True)
    ]


def _bad_stamp(detail: str) -> Rejection:
    return Rejection(ReasonCode.BAD_SIGNATURE, f"gateway stamp: {detail}")


def verify_stamp(event: Mapping[str, Any], trust: TrustStore, at: datetime) -> TrustedKey:
    """Check the gateway stamp of a delivered event or receipt; return the gateway's key.

    The proof leads from the event's leaf hash to a root, which the JWS must sign, for a tree
    of the size the JWS header signs.
    """
    token, proof = event.get(STAMP), event.get(STAMP_PROOF)
    if not isinstance(token, str):
        raise Rejection(ReasonCode.BAD_SIGNATURE, "gateway stamp is missing")
    if not isinstance(proof, str):
        raise _bad_stamp(f"{STAMP_PROOF} is missing or not a string")
    try:
        jws = parse_detached(token)
    except JwsError as exc:
        raise _bad_stamp(str(exc)) from exc
    if jws.header.get("typ") != STAMP_TYP:
        raise _bad_stamp(f"typ is not {STAMP_TYP!r}")
    if jws.header.get("crit") != STAMP_CRIT:
        raise _bad_stamp('header must declare its tree critical: "crit": ["xgw"]')
    tree = jws.header.get("xgw")
    if (
        not isinstance(tree, dict)
        or set(tree) != {"tree", "size"}
        or tree["tree"] != STAMP_TREE
        or type(tree["size"]) is not int
    ):
        raise _bad_stamp(f'header must name the tree: "xgw": {{"tree": "{STAMP_TREE}", "size": n}}')
    try:
        index, size, path = decode_proof(proof)
    except ValueError as exc:
        raise _bad_stamp(f"{STAMP_PROOF}: {exc}") from exc
    if size != tree["size"]:
        raise _bad_stamp(f"proof is for a tree of size {size}, the signed tree has {tree['size']}")
    trusted = trust.resolve(jws.header, at)
    if trusted.owner != GATEWAY_OWNER:
        raise Rejection(ReasonCode.SIGNER_AGENCY_MISMATCH, "stamp is not signed by the gateway")
    unstamped = {k: v for k, v in event.items() if k not in STAMP_ATTRIBUTES}
    root = root_from_path(leaf_hash(canonical_or_reject(unstamped)), index, size, path)
    if not jws.verify(root, trusted.key):
        raise Rejection(ReasonCode.BAD_SIGNATURE, "gateway stamp does not verify")
    return trusted
