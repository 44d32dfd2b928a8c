"""RFC 9162 hash trees: the CT test vectors, compact ranges and consistency proofs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.wire import merkle

# The leaves and roots of the Certificate Transparency test tree (RFC 6962 implementations,
# e.g. transparency-dev/merkle testonly): the roots of the trees of the first 1..8 leaves.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Consistency proofs of the same tree: (old size, new size, proof).
CT_PROOFS = [
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
LEAVES = [merkle.leaf_hash(d) for d in CT_LEAVES]


def _full_tree_node(leaves: list[bytes]) -> Callable[[int, int], bytes]:
    return lambda start, end: merkle.subtree_hash(leaves[start:end])


def _grown(leaves: list[bytes]) -> merkle.CompactRange:
    tree = merkle.CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    return tree


@pytest.mark.parametrize("size", range(1, 9))
def test_compact_range_roots_are_the_ct_test_vectors(size: int) -> None:
    """Growing leaf by leaf gives the RFC 6962/9162 root of every prefix of the CT tree."""
    tree = _grown(LEAVES[:size])
    assert tree.root().hex() == CT_ROOTS[size - 1]
    assert merkle.subtree_hash(LEAVES[:size]).hex() == CT_ROOTS[size - 1]
    assert merkle.merkle_tree(LEAVES[:size])[0].hex() == CT_ROOTS[size - 1]


def test_the_empty_tree_has_the_hash_of_nothing() -> None:
    """RFC 9162 2.1.1: MTH({}) = SHA-256()."""
    assert merkle.CompactRange().root().hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(("old", "new", "proof"), CT_PROOFS)
def test_consistency_proofs_are_the_ct_test_vectors(old: int, new: int, proof: list[str]) -> None:
    """The proofs built, from the full tree or from the old compact range, are the CT ones."""
    assert [h.hex() for h in merkle.consistency_proof(old, new, _full_tree_node(LEAVES))] == proof
    node = merkle.extension_nodes(_grown(LEAVES[:old]), LEAVES[old:new])
    assert [h.hex() for h in merkle.consistency_proof(old, new, node)] == proof
    assert merkle.verify_consistency(
        old,
        new,
        bytes.fromhex(CT_ROOTS[old - 1]),
        bytes.fromhex(CT_ROOTS[new - 1]),
        [bytes.fromhex(h) for h in proof],
    )


def test_every_proof_between_trees_of_up_to_40_leaves_verifies_and_only_for_its_sizes() -> None:
    """For all 0 <= m <= n <= 40 the proof verifies; another size or a changed hash fails it."""
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(40)]
    roots = [merkle.CompactRange().root()] + [_grown(leaves[:n]).root() for n in range(1, 41)]
    for new in range(41):
        for old in range(new + 1):
            node = merkle.extension_nodes(_grown(leaves[:old]), leaves[old:new])
            proof = merkle.consistency_proof(old, new, node)
            assert proof == merkle.consistency_proof(old, new, _full_tree_node(leaves[:new]))
            assert merkle.verify_consistency(old, new, roots[old], roots[new], proof)
            if 0 < old < new:
                assert not merkle.verify_consistency(old, new, roots[old], roots[new - 1], proof)
                assert not merkle.verify_consistency(old - 1, new, roots[old], roots[new], proof)
                for i in range(len(proof)):
                    bent = [*proof[:i], bytes(32), *proof[i + 1 :]]
                    assert not merkle.verify_consistency(old, new, roots[old], roots[new], bent)


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=70), st.data())
def test_a_rewritten_leaf_is_never_consistent(data: list[bytes], draw: st.DataObject) -> None:
    """Changing any leaf of the old tree makes every proof to the honest new tree fail."""
    leaves = [merkle.leaf_hash(d) for d in data]
    old = draw.draw(st.integers(1, len(leaves)))
    changed = draw.draw(st.integers(0, old - 1))
    forged = [
        *leaves[:changed],
        merkle.leaf_hash(b"forged" + data[changed]),
        *leaves[changed + 1 :],
    ]
    proof = merkle.consistency_proof(old, len(leaves), _full_tree_node(leaves))
    honest_root = _grown(leaves).root()
    assert not merkle.verify_consistency(
        old, len(leaves), _grown(forged[:old]).root(), honest_root, proof
    )


def test_a_compact_range_refuses_a_wrong_number_of_hashes() -> None:
    """A stored frontier must have one hash per set bit of its size, each 32 bytes."""
    with pytest.raises(ValueError, match="has 2 hashes"):
        merkle.CompactRange(6, [bytes(32)])
    with pytest.raises(ValueError, match="32 bytes"):
        merkle.CompactRange(1, [b"short"])
