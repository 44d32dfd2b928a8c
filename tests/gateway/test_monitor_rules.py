"""The monitor's pure parts: the facts of an audit record, and the misuse rules."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.monitor.facts import DECISION, DELIVERY, REQUEST, facts_of
from gateway.monitor.rules import CommitWatch, Thresholds, bulk_lookup, rejection_spike, silent
from tests.support import monitor_stream as ms

REQUESTS = frozenset({ms.REQUEST_TYPE})


def _record(**changes: object) -> bytes:
    stream = ms.Stream()
    stream.add(1_796_600_000.0, "education", ms.REQUEST_TYPE, recipients=(("police", "admission"),))
    return orjson.dumps({**stream.records[0], **changes})


def test_a_request_gives_its_decision_delivery_and_request() -> None:
    """One fact per role, each about the agency it concerns; Vietnamese text kept as is."""
    facts = facts_of(_record(reason=None, detail="Phường Bến Nghé"), REQUESTS)
    assert [(f.kind, f.agency) for f in facts] == [
        (DECISION, "education"),
        (DELIVERY, "police"),
        (REQUEST, "education"),
    ]
    assert facts[2].subject
    assert facts[0].at == 1_796_600_000.0


def test_a_timed_out_request_is_a_decision_only() -> None:
    """The request was counted when it was decided; its timeout is not a second look-up."""
    facts = facts_of(_record(outcome="timed_out", recipients=[]), REQUESTS)
    assert [f.kind for f in facts] == [DECISION]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[1]",
        _record(decided_at="yesterday"),
        _record(decided_at=None),
        _record(outcome=None),
        _record(recipients={"a": 1}),
        _record(recipients=[{"agency": 7}]),
        _record(decided_at="2026-12-07T06:00:00"),
    ],
)
def test_what_is_not_an_audit_record_is_refused_with_a_reason(body: bytes) -> None:
    """The monitor counts it as unreadable and goes on."""
    with pytest.raises(ValueError, match=r"."):
        facts_of(body, REQUESTS)


@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=20,
    ).map(orjson.dumps)
)
def test_no_bytes_make_facts_of_raise_anything_but_value_error(body: bytes) -> None:
    """Raw bytes on the audit topic cannot stop the monitor's agent."""
    try:
        facts = facts_of(body, REQUESTS)
    except ValueError:
        return
    assert all(f.kind in {DECISION, DELIVERY, REQUEST} for f in facts)


def test_bulk_lookup_needs_the_floor_and_the_factor() -> None:
    """Above max(floor, factor x baseline) only."""
    t = Thresholds(bulk_min_subjects=50, bulk_factor=5.0)
    assert bulk_lookup(t, 50, [0] * 10) is None
    assert bulk_lookup(t, 51, [0] * 10) == 50.0
    assert bulk_lookup(t, 100, [20] * 10) is None
    assert bulk_lookup(t, 101, [20] * 10) == 100.0


def test_a_rejection_spike_needs_a_baseline_and_enough_decisions() -> None:
    """An agency always rejected does not spike; a new one has no baseline yet."""
    t = Thresholds(reject_min_decisions=20, reject_ratio=0.5, reject_factor=3.0)
    assert rejection_spike(t, 30, 40, [(0, 4)] * 10) == (0.75, 0.5)
    assert rejection_spike(t, 30, 40, []) is None
    assert rejection_spike(t, 10, 10, [(0, 4)] * 10) is None
    assert rejection_spike(t, 40, 40, [(4, 4)] * 10) is None
    assert rejection_spike(t, 40, 40, [(38, 40)] * 10) is None  # nearly all, by design: no spike
    assert rejection_spike(t, 40, 40, [(28, 40)] * 10) == (1.0, 1.0)  # 0.7 -> 1.0 is one
    assert rejection_spike(t, 40, 40, [(32, 40)] * 10) == (1.0, 1.0)  # exactly 0.2 above: one


def test_silence_needs_an_active_agency_and_the_time() -> None:
    """Active in each recent window, quiet for silence_s."""
    t = Thresholds(silence_s=300.0, active_windows=3)
    assert silent(t, 1000.0, 1300.0, [5, 4, 6])
    assert not silent(t, 1000.0, 1299.0, [5, 4, 6])
    assert not silent(t, 1000.0, 5000.0, [5, 0, 6])


def test_a_commit_that_stands_still_while_there_is_lag_is_a_stall_said_once() -> None:
    """Seconds still grow only with lag and an unmoved offset; a move or no lag resets them."""
    watch = CommitWatch(stall_s=60.0)
    tp = ("xgw.audit", 2)
    rows, stalled = watch.observe({tp: 10}, {tp: 50}, now=0.0)
    assert (rows[0].lag, rows[0].stalled_seconds, stalled) == (40, 0.0, [])
    rows, stalled = watch.observe({tp: 10}, {tp: 80}, now=59.0)
    assert (rows[0].stalled_seconds, stalled) == (59.0, [])
    rows, stalled = watch.observe({tp: 10}, {tp: 80}, now=61.0)
    assert [(s.topic, s.partition, s.stalled_seconds) for s in stalled] == [("xgw.audit", 2, 61.0)]
    _, stalled = watch.observe({tp: 10}, {tp: 80}, now=200.0)
    assert stalled == []  # said once per stall
    rows, _ = watch.observe({tp: 11}, {tp: 80}, now=201.0)
    assert rows[0].stalled_seconds == 0.0  # it moved
    rows, _ = watch.observe({tp: 80}, {tp: 80}, now=900.0)
    assert rows[0].stalled_seconds == 0.0  # no lag: nothing to stall on
