"""RFC 9162 (section 2.1) hash trees: roots, audit paths, consistency proofs, compact ranges.

Pure functions over SHA-256 hashes. :mod:`gateway.core.stamp` uses the audit paths to sign a
batch of deliveries and receipts once (the gateway stamp) and to verify one event's stamp. The
audit trail keeps a tree over its entries as a :class:`CompactRange` and signs its root in each
checkpoint; a consistency proof (RFC 9162 2.1.4) shows that a later checkpoint's tree extends
an earlier one's, with a logarithmic number of hashes and without the entries.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

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


# --- the growing tree of the audit trail -------------------------------------------------


def empty_root() -> bytes:
    """RFC 9162 2.1.1: the root of the empty tree is the hash of the empty string."""
    return hashlib.sha256(b"").digest()


class CompactRange:
    """The tree over leaves ``[0, size)`` kept as its perfect subtrees, largest first.

    A tree of n leaves has one perfect subtree per set bit of n (its "frontier"): appending a
    leaf merges equal subtrees like a binary carry, so appending and computing the root cost
    O(log n) hashes and the whole state is at most 64 hashes. It is also what an earlier tree
    contributes to a consistency proof (:func:`consistency_proof`).
    """

    __slots__ = ("_nodes", "size")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(nodes) != size.bit_count():
            raise ValueError(f"a compact range of {size} leaves has {size.bit_count()} hashes")
        if any(len(node) != _HASH_BYTES for node in nodes):
            raise ValueError("a compact range hash is not 32 bytes")
        self.size = size
        self._nodes = list(nodes)

    @property
    def nodes(self) -> list[bytes]:
        """The subtree hashes, largest (leftmost) first."""
        return list(self._nodes)

    def copy(self) -> CompactRange:
        """An independent copy."""
        return CompactRange(self.size, self._nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash at index ``size``."""
        node = leaf
        carry = self.size
        while carry & 1:  # the lowest subtrees have the same height: merge them
            node = _node(self._nodes.pop(), node)
            carry >>= 1
        self._nodes.append(node)
        self.size += 1

    def root(self) -> bytes:
        """The tree's root (RFC 9162 2.1.1), folded from the smallest subtree."""
        if not self._nodes:
            return empty_root()
        root = self._nodes[-1]
        for node in reversed(self._nodes[:-1]):
            root = _node(node, root)
        return root

    def spans(self) -> dict[tuple[int, int], bytes]:
        """Each subtree hash by the leaves ``(start, end)`` it covers."""
        spans, start = {}, 0
        for node, height in zip(self._nodes, self._heights(), strict=True):
            spans[start, start + (1 << height)] = node
            start += 1 << height
        return spans

    def _heights(self) -> list[int]:
        return [bit for bit in reversed(range(self.size.bit_length())) if self.size >> bit & 1]


def subtree_hash(leaves: Sequence[bytes]) -> bytes:
    """RFC 9162 2.1.1 MTH over leaf hashes (at least one)."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(subtree_hash(leaves[:k]), subtree_hash(leaves[k:]))


def extension_nodes(earlier: CompactRange, leaves: Sequence[bytes]) -> Callable[[int, int], bytes]:
    """The hash of any subtree of the tree ``earlier`` grew into by appending ``leaves``.

    What a consistency proof from ``earlier.size`` needs: subtrees left of the old size are
    among the old tree's compact range, subtrees right of it are over the new leaves, and the
    ones that straddle it are hashed from their two halves.
    """
    old, spans = earlier.size, earlier.spans()

    def node(start: int, end: int) -> bytes:
        if (start, end) in spans:
            return spans[start, end]
        if start >= old:
            return subtree_hash(leaves[start - old : end - old])
        if end <= old:
            raise ValueError(f"subtree {start}..{end} is inside the old tree and not its own")
        k = 1 << ((end - start - 1).bit_length() - 1)
        return _node(node(start, start + k), node(start + k, end))

    return node


def consistency_proof(old: int, new: int, node: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 2.1.4.1: the hashes proving the tree of ``new`` leaves extends that of ``old``.

    ``node(start, end)`` gives the hash of the subtree over leaves ``[start, end)`` of the new
    tree (:func:`extension_nodes`). Empty when ``old`` is 0 or equals ``new``.
    """
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from a tree of {old} leaves to one of {new}")
    if old in (0, new):
        return []

    def subproof(m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [node(start, end)]
        k = 1 << ((n - 1).bit_length() - 1)
        if m <= k:
            return [*subproof(m, start, start + k, complete), node(start + k, end)]
        return [*subproof(m - k, start + k, end, False), node(start, start + k)]

    return subproof(old, 0, new, True)


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: whether ``proof`` shows the tree ``(new, new_root)`` extends ``old``."""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof  # every tree extends the empty one
    path = list(proof)
    if not path or any(len(item) != _HASH_BYTES for item in path):
        return False
    if old & (old - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
