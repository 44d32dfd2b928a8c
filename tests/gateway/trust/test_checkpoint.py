"""The published checkpoint record: strict decoding, and how a new one stands to the held one."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.trust.checkpoint import (
    Checkpoint,
    CheckpointRecordError,
    PublishedCheckpoint,
    Standing,
    checkpoint_from_json,
    checkpoint_to_json,
    judge,
)
from gateway.wire import merkle

HELD = Checkpoint(4, "aa" * 32, "2026-12-06T10:00:00.000000Z", "sig", "cert", "bb" * 32)


def _record(**changes: object) -> PublishedCheckpoint:
    checkpoint = replace(HELD, seq=6, signed_at="2026-12-06T10:01:00.000000Z", root="cc" * 32)
    fields: dict[str, object] = {
        "checkpoint": checkpoint,
        "previous_seq": 4,
        "previous_root": "bb" * 32,
        "consistency": (),
    }
    fields.update(changes)
    return PublishedCheckpoint(**fields)  # type: ignore[arg-type]


def test_a_record_round_trips_and_its_checkpoint_reads_as_a_file_line() -> None:
    """encode/decode are inverse; checkpoint_from_json reads both a record and a file line."""
    record = _record(consistency=("dd" * 32,))
    assert PublishedCheckpoint.decode(record.encode()) == record
    assert checkpoint_from_json(record.encode()) == record.checkpoint
    assert checkpoint_from_json(checkpoint_to_json(record.checkpoint)) == record.checkpoint


@pytest.mark.parametrize(
    "change",
    [
        {"extra": 1},
        {"seq": 0},
        {"seq": True},
        {"root": "AB" * 32},
        {"head": "ab"},
        {"previous": {"seq": 1}},
        {"consistency": "ab"},
        {"version": 2},
        {"signature": ""},
    ],
)
def test_a_malformed_record_is_refused(change: dict[str, object]) -> None:
    """Unknown members, bad numbers, hashes of another spelling or length are refused."""
    doc = json.loads(_record().encode())
    doc.update(change)
    with pytest.raises(CheckpointRecordError):
        PublishedCheckpoint.decode(json.dumps(doc).encode())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.just("ab" * 32),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
_MEMBERS = sorted(json.loads(_record().encode()))


@given(
    st.binary(max_size=300)
    | st.dictionaries(st.sampled_from(_MEMBERS), _JSON).map(lambda d: json.dumps(d).encode())
)
def test_no_input_makes_decoding_fail_otherwise(raw: bytes) -> None:
    """Whatever the bytes or members, decoding returns a record or raises CheckpointRecordError."""
    with contextlib.suppress(CheckpointRecordError):
        PublishedCheckpoint.decode(raw)


def test_judgements() -> None:
    """Older, same, rolled back, rewritten, unlinked, and a proven extension."""
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(6)]
    old, new = merkle.CompactRange(), merkle.CompactRange()
    for i, leaf in enumerate(leaves):
        new.append(leaf)
        if i < 4:
            old.append(leaf)
    proof = merkle.consistency_proof(4, 6, merkle.extension_nodes(old, leaves[4:]))
    held = replace(HELD, root=old.root().hex())
    proven = _record(
        checkpoint=replace(_record().checkpoint, root=new.root().hex()),
        previous_root=held.root,
        consistency=tuple(h.hex() for h in proof),
    )
    assert judge(held, proven).standing is Standing.EXTENDS
    assert judge(None, proven).standing is Standing.EXTENDS
    bent = replace(proven, consistency=(proof[0].hex(), "00" * 32))
    assert judge(held, bent).standing is Standing.CONFLICT
    assert judge(held, replace(proven, previous_seq=3)).standing is Standing.UNLINKED
    earlier = replace(held, seq=2, signed_at="2026-12-06T09:00:00.000000Z")
    assert judge(held, _record(checkpoint=earlier)).standing is Standing.OLDER
    later = replace(held, seq=2, signed_at="2026-12-06T11:00:00.000000Z")
    rolled_back = judge(held, _record(checkpoint=later))
    assert rolled_back.standing is Standing.CONFLICT
    assert "rolled back" in rolled_back.why
    assert judge(held, _record(checkpoint=held)).standing is Standing.OLDER
    other = replace(held, root="ee" * 32)
    assert judge(held, _record(checkpoint=other)).standing is Standing.CONFLICT
