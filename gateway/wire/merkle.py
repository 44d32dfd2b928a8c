"""RFC 9162 (section 2.1) hash trees: roots, audit paths, and their text form in a stamp.

Pure functions over SHA-256 hashes; :mod:`gateway.core.stamp` uses them to sign a batch of
deliveries and receipts once (the gateway stamp) and to verify one event's stamp.
"""

from __future__ import annotations

import hashlib
import re

from gateway.wire import b64url

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_HASH_BYTES = 32
_MAX_TREE_SIZE = 1 << 32  # an audit path of at most 32 hashes
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,9}")


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def merkle_tree(leaves: list[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root of the tree over ``leaves`` (leaf hashes) and each leaf's audit path, leaf first.

    RFC 9162 2.1.1 and 2.1.3.1: the left subtree holds the largest power of two of leaves
    smaller than n. Each inner node is hashed once, so n leaves cost n - 1 node hashes.
    """
    n = len(leaves)
    if n <= 1:
        if not leaves:
            raise ValueError("a hash tree needs at least one leaf")
        return leaves[0], [[]]
    k = 1 << ((n - 1).bit_length() - 1)
    left, left_paths = merkle_tree(leaves[:k])
    right, right_paths = merkle_tree(leaves[k:])
    for path in left_paths:
        path.append(right)
    for path in right_paths:
        path.append(left)
    return _node(left, right), left_paths + right_paths


def _sibling_on_left(index: int, size: int) -> list[bool]:
    """For each audit path step from the leaf up, whether the sibling is hashed on the left.

    The loop of RFC 9162 2.1.3.2 without the hashing; its length is the exact path length.
    """
    fn, sn = index, size - 1
    sides = []
    while sn:
        if fn & 1 or fn == sn:
            sides.append(True)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sides.append(False)
        fn >>= 1
        sn >>= 1
    return sides


def root_from_path(leaf_hash_: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """The root that ``path`` proves for the leaf at ``index`` of a tree of ``size`` leaves.

    Raise ``ValueError`` if ``index`` is outside the tree or the path has the wrong length.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    sides = _sibling_on_left(index, size)
    if len(path) != len(sides):
        raise ValueError(
            f"audit path has {len(path)} hashes, leaf {index} of a tree of size {size} "
            f"needs {len(sides)}"
        )
    root = leaf_hash_
    for sibling, on_left in zip(path, sides, strict=True):
        root = _node(sibling, root) if on_left else _node(root, sibling)
    return root


def decode_proof(text: str) -> tuple[int, int, list[bytes]]:
    """Parse a stamp proof strictly; raise ``ValueError`` on any other spelling.

    Checked: canonical decimals, 1 <= size <= 2**32, index < size, exactly the path length
    that index and size imply, and each hash 32 bytes of canonical unpadded base64url.
    """
    parts = text.split(".")
    if len(parts) < 2 or not all(_DECIMAL.fullmatch(p) for p in parts[:2]):  # noqa: PLR2004 - index and size
        raise ValueError("proof must start '<leaf index>.<tree size>' in canonical decimal")
    index, size, encoded = int(parts[0]), int(parts[1]), parts[2:]
    if not 1 <= size <= _MAX_TREE_SIZE:
        raise ValueError(f"tree size must be 1..{_MAX_TREE_SIZE}")
    if index >= size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    expected = len(_sibling_on_left(index, size))
    if len(encoded) != expected:
        raise ValueError(
            f"audit path has {len(encoded)} hashes, leaf {index} of a tree of size {size} "
            f"needs {expected}"
        )
    path = []
    for item in encoded:
        try:
            sibling = b64url.decode(item)
        except ValueError as exc:
            raise ValueError("an audit path hash is not canonical base64url") from exc
        if len(sibling) != _HASH_BYTES:
            raise ValueError("an audit path hash is not 32 bytes")
        path.append(sibling)
    return index, size, path
